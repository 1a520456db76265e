// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}}, then raw little-endian data. Files are mmapped;
// every offset, size, dtype and shape is validated when the file is opened.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace moe {

enum class DType { F32, F16, BF16, I64, I32 };

const char* dtype_name(DType dtype);
size_t dtype_bytes(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  std::vector<std::string> names() const;
  const uint8_t* bytes(const TensorInfo& info) const { return data_ + info.begin; }

  // The tensor as float32: a pointer into the mapping when stored as aligned F32 (no copy),
  // else converted into `storage`.
  const float* as_float32(const TensorInfo& info, std::vector<float>& storage) const;
  std::vector<int64_t> as_int64(const TensorInfo& info) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint8_t* data_ = nullptr;
  std::map<std::string, TensorInfo> tensors_;
};

// A tensor to write: float32 or int64 values with a shape.
struct OutputTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> f32;    // used when !is_int
  std::vector<int64_t> i64;  // used when is_int
  bool is_int = false;
};

// Writes to `path.partial` then renames, so an interrupted run never leaves a complete-looking
// file.
void write_safetensors(const std::string& path, const std::vector<OutputTensor>& tensors);

float bf16_to_float(uint16_t bits);
float f16_to_float(uint16_t bits);

}  // namespace moe
