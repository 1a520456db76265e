#include "model/checkpoint.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "runtime/error.hpp"

namespace moe {
namespace fs = std::filesystem;

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// The shard files of a checkpoint directory, in a stable order; with an index, the shard path
// that it names for each tensor too.
std::vector<std::string> shard_paths(const std::string& dir,
                                     std::map<std::string, std::string>& indexed) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> paths;
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      MOE_FAIL(index.string(), ": not valid JSON: ", e.what());
    }
    MOE_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
              ": missing field 'weight_map'");
    std::set<std::string> names;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      MOE_CHECK(file.is_string(), index.string(), ": weight_map entry for '", tensor,
                "' is not a file name");
      // Shards live in the model directory: a path elsewhere ("../x", "/etc/x") is refused.
      const std::string name = file.get<std::string>();
      MOE_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos,
                index.string(), ": weight_map entry for '", tensor, "' names '", name,
                "', which is not a file name in the model directory");
      names.insert(name);
      indexed[tensor] = (fs::path(dir) / name).string();
    }
    for (const auto& name : names) {
      const fs::path p = fs::path(dir) / name;
      MOE_CHECK(fs::exists(p), index.string(), ": lists shard '", name, "' which does not exist");
      paths.push_back(p.string());
    }
    return paths;
  }
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  MOE_CHECK(!paths.empty(), dir, ": no *.safetensors file found");
  return paths;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  MOE_CHECK(fs::is_directory(dir), dir, ": model directory does not exist");
  config_ = load_model_config((fs::path(dir) / "config.json").string());
  std::map<std::string, std::string> indexed;
  for (const auto& path : shard_paths(dir, indexed)) {
    auto file = std::make_shared<SafetensorsFile>(path);
    for (const auto& name : file->names()) {
      auto [it, inserted] = file_of_.emplace(name, file.get());
      MOE_CHECK(inserted, path, ": tensor '", name, "' also appears in ", it->second->path());
    }
    owner_[file.get()] = file;
    files_.push_back(std::move(file));
  }
  for (const auto& [tensor, path] : indexed) {
    const auto it = file_of_.find(tensor);
    MOE_CHECK(it != file_of_.end() && it->second->path() == path, dir,
              "/model.safetensors.index.json: puts tensor '", tensor, "' in ", path, ", but ",
              it == file_of_.end() ? "no shard holds it" : "it is in " + it->second->path());
  }
}

Weight Checkpoint::load(const std::string& name, const std::vector<int64_t>& shape) const {
  auto it = file_of_.find(name);
  MOE_CHECK(it != file_of_.end(), dir_, ": missing tensor '", name, "'");
  const SafetensorsFile& file = *it->second;
  const TensorInfo& info = file.info(name);
  MOE_CHECK(info.shape == shape, file.path(), ": tensor '", name, "' has shape ",
            shape_text(info.shape), ", the config needs ", shape_text(shape));
  auto storage = std::make_shared<std::vector<float>>();
  const float* data = file.as_float32(info, *storage);
  if (storage->empty()) return Weight(owner_.at(&file), data);  // view into the mapping
  return Weight(storage, data);
}

bool Checkpoint::maps(const std::string& name) const {
  auto it = file_of_.find(name);
  MOE_CHECK(it != file_of_.end(), dir_, ": missing tensor '", name, "'");
  const TensorInfo& info = it->second->info(name);
  return info.dtype == DType::F32 &&
         reinterpret_cast<uintptr_t>(it->second->bytes(info)) % alignof(float) == 0;
}

size_t Checkpoint::stored_bytes(const std::function<bool(const std::string&)>& include) const {
  size_t total = 0;
  for (const auto& file : files_)
    for (const auto& name : file->names()) {
      if (include && !include(name)) continue;
      const auto& info = file->info(name);
      total += info.end - info.begin;
    }
  return total;
}

}  // namespace moe
