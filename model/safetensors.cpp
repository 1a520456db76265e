#include "model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/atomic_file.hpp"
#include "runtime/error.hpp"

namespace moe {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I64:
      return "I64";
    case DType::I32:
      return "I32";
  }
  return "?";
}

size_t dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::I64:
      return 8;
  }
  return 0;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

DType parse_dtype(const std::string& s, const std::string& where) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  if (s == "I64") return DType::I64;
  if (s == "I32") return DType::I32;
  MOE_FAIL(where, ": unsupported dtype '", s, "' (supported: F32, F16, BF16, I64, I32)");
}

}  // namespace

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000 | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  MOE_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  map_bytes_ = static_cast<size_t>(st.st_size);
  if (map_bytes_ < 8) {
    ::close(fd);
    MOE_FAIL(path, ": truncated safetensors file (", map_bytes_, " bytes, no header length)");
  }
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  MOE_CHECK(map_ != MAP_FAILED, path, ": mmap failed: ", std::strerror(errno));
  try {
    const auto* base = static_cast<const uint8_t*>(map_);
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, base, 8);  // little-endian on every platform we build for
    MOE_CHECK(header_bytes <= map_bytes_ - 8, path, ": header length ", header_bytes,
              " exceeds the file size ", map_bytes_, " (truncated or not safetensors)");
    nlohmann::json header;
    try {
      // A tensor named twice would silently take the last entry: refused instead.
      std::set<std::string> names;
      const auto refuse_duplicates = [&](int depth, nlohmann::json::parse_event_t event,
                                         nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key)
          MOE_CHECK(names.insert(parsed.get<std::string>()).second, path, ": header names '",
                    parsed.get<std::string>(), "' twice");
        return true;
      };
      header = nlohmann::json::parse(base + 8, base + 8 + header_bytes, refuse_duplicates);
    } catch (const nlohmann::json::parse_error& e) {
      MOE_FAIL(path, ": header is not valid JSON: ", e.what());
    }
    MOE_CHECK(header.is_object(), path, ": header is not a JSON object");
    data_ = base + 8 + header_bytes;
    const size_t data_bytes = map_bytes_ - 8 - header_bytes;
    std::vector<std::pair<size_t, size_t>> ranges;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      const std::string where = path + ": tensor '" + name + "'";
      MOE_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                    entry.contains("data_offsets"),
                where, ": entry needs dtype, shape and data_offsets");
      TensorInfo info;
      info.name = name;
      MOE_CHECK(entry["dtype"].is_string(), where, ": dtype is not a string");
      info.dtype = parse_dtype(entry["dtype"].get<std::string>(), where);
      MOE_CHECK(entry["shape"].is_array(), where, ": shape is not an array");
      for (const auto& d : entry["shape"]) {
        MOE_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, where,
                  ": shape has a bad dimension ", d.dump());
        info.shape.push_back(d.get<int64_t>());
      }
      const auto& offsets = entry["data_offsets"];
      MOE_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                    offsets[1].is_number_unsigned(),
                where, ": data_offsets must be two non-negative integers");
      info.begin = offsets[0].get<size_t>();
      info.end = offsets[1].get<size_t>();
      MOE_CHECK(info.begin <= info.end && info.end <= data_bytes, where, ": data_offsets [",
                info.begin, ", ", info.end, "] lie beyond the data section (", data_bytes,
                " bytes; file truncated or corrupt)");
      // Checked: a shape like [2^62, 4] must not wrap around to a size that matches the data.
      uint64_t expected = dtype_bytes(info.dtype);
      for (int64_t d : info.shape)
        MOE_CHECK(!__builtin_mul_overflow(expected, uint64_t(d), &expected), where, ": shape ",
                  entry["shape"].dump(), " needs more bytes than any file holds");
      MOE_CHECK(info.end - info.begin == expected, where, ": holds ", info.end - info.begin,
                " bytes but dtype ", dtype_name(info.dtype), " and its shape need ", expected);
      ranges.emplace_back(info.begin, info.end);
      tensors_.emplace(name, std::move(info));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
      MOE_CHECK(ranges[i].first >= ranges[i - 1].second, path,
                ": two tensors overlap in the data section at byte ", ranges[i].first);
  } catch (...) {
    ::munmap(map_, map_bytes_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  MOE_CHECK(it != tensors_.end(), path_, ": missing tensor '", name, "'");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

const float* SafetensorsFile::as_float32(const TensorInfo& info,
                                         std::vector<float>& storage) const {
  const uint8_t* src = bytes(info);
  const size_t n = size_t(info.numel());
  switch (info.dtype) {
    case DType::F32:
      if (reinterpret_cast<uintptr_t>(src) % alignof(float) == 0)
        return reinterpret_cast<const float*>(src);
      storage.resize(n);
      std::memcpy(storage.data(), src, n * 4);
      return storage.data();
    case DType::BF16:
    case DType::F16: {
      storage.resize(n);
      const bool bf16 = info.dtype == DType::BF16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        storage[i] = bf16 ? bf16_to_float(bits) : f16_to_float(bits);
      }
      return storage.data();
    }
    default:
      MOE_FAIL(path_, ": tensor '", info.name, "' has dtype ", dtype_name(info.dtype),
               ", expected a floating-point dtype");
  }
}

std::vector<int64_t> SafetensorsFile::as_int64(const TensorInfo& info) const {
  const uint8_t* src = bytes(info);
  std::vector<int64_t> out(size_t(info.numel()));
  if (info.dtype == DType::I64) {
    std::memcpy(out.data(), src, out.size() * 8);
  } else if (info.dtype == DType::I32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, src + 4 * i, 4);
      out[i] = v;
    }
  } else {
    MOE_FAIL(path_, ": tensor '", info.name, "' has dtype ", dtype_name(info.dtype),
             ", expected an integer dtype");
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<OutputTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (const auto& t : tensors) {
    const size_t bytes = t.is_int ? t.i64.size() * 8 : t.f32.size() * 4;
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    MOE_CHECK(size_t(numel) * (t.is_int ? 8 : 4) == bytes, "write_safetensors: tensor '", t.name,
              "' shape does not match its data");
    header[t.name] = {{"dtype", t.is_int ? "I64" : "F32"},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // keep the data 8-byte aligned
  write_file_atomically(path, [&](std::ostream& out) {
    const uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (const auto& t : tensors) {
      if (t.is_int)
        out.write(reinterpret_cast<const char*>(t.i64.data()), std::streamsize(t.i64.size() * 8));
      else
        out.write(reinterpret_cast<const char*>(t.f32.data()), std::streamsize(t.f32.size() * 4));
    }
  });
}

}  // namespace moe
