// A Hugging Face model directory: config.json plus one model.safetensors, or shards listed by
// model.safetensors.index.json. Hands out tensors as float32, checked against expected shapes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/safetensors.hpp"

namespace moe {

// A float32 weight. Points into the mmapped file when stored as F32 (the mapping stays alive
// while any weight uses it), else owns a converted copy.
using Weight = std::shared_ptr<const float>;

class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  bool has(const std::string& name) const { return file_of_.count(name) != 0; }
  // Throws naming the file and tensor when missing or of another shape.
  Weight load(const std::string& name, const std::vector<int64_t>& shape) const;
  // Whether load(name) gives a view into the mapped file (float32 stored aligned) rather than a
  // converted copy: only then can its pages be given back and read again from the file.
  bool maps(const std::string& name) const;
  // Bytes of the tensors as stored on disk: all of them, or those whose name passes `include`.
  size_t stored_bytes(const std::function<bool(const std::string&)>& include = nullptr) const;

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> file_of_;
  std::map<const SafetensorsFile*, std::shared_ptr<SafetensorsFile>> owner_;
};

}  // namespace moe
