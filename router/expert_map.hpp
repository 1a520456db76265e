// Which ranks hold each (sparse layer, expert): one rank, or several (replicas). Read from an
// expert_map.json, or spread round-robin over the expert ranks; validated before any work starts.
#pragma once

#include <cereal/types/vector.hpp>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace moe {

struct ExpertMap {
  // replicas[layer][expert] = ranks holding that expert, the first being its primary.
  std::vector<std::vector<std::vector<int>>> replicas;

  int num_layers() const { return static_cast<int>(replicas.size()); }
  int num_experts() const { return replicas.empty() ? 0 : static_cast<int>(replicas[0].size()); }
  const std::vector<int>& ranks_of(int layer, int expert) const { return replicas[layer][expert]; }
  bool holds(int rank, int layer, int expert) const;
  int experts_on(int rank) const;  // (layer, expert) pairs resident on `rank`

  template <class Archive>
  void serialize(Archive& ar) {
    ar(replicas);
  }
};

// Experts spread over ranks first_rank..world_size-1: expert e of layer l goes to rank
// first_rank + (l * num_experts + e) % expert_ranks.
ExpertMap round_robin_expert_map(int num_layers, int num_experts, int first_rank, int world_size);

// Parses {"layers": [{"layer": L, "experts": [[ranks of expert 0], [ranks of expert 1], ...]}]}.
// Rejects a map that names a rank outside first_rank..world_size-1, leaves an expert unplaced,
// or does not match the model's layers and experts. `source` names the file in errors.
ExpertMap parse_expert_map(const nlohmann::json& json, const std::string& source, int num_layers,
                           int num_experts, int first_rank, int world_size);
ExpertMap load_expert_map(const std::string& path, int num_layers, int num_experts, int first_rank,
                          int world_size);
nlohmann::json expert_map_to_json(const ExpertMap& map);

// Rejects a map whose experts on some rank need more than that rank's memory budget.
void check_expert_memory(const ExpertMap& map, size_t bytes_per_expert,
                         const std::vector<size_t>& budget_bytes_per_rank,
                         const std::string& source);

}  // namespace moe
