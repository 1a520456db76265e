#include "router/expert_map.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/error.hpp"

namespace moe {

bool ExpertMap::holds(int rank, int layer, int expert) const {
  for (int r : replicas[layer][expert])
    if (r == rank) return true;
  return false;
}

int ExpertMap::experts_on(int rank) const {
  int n = 0;
  for (int l = 0; l < num_layers(); ++l)
    for (int e = 0; e < num_experts(); ++e) n += holds(rank, l, e);
  return n;
}

ExpertMap round_robin_expert_map(int num_layers, int num_experts, int first_rank, int world_size) {
  const int expert_ranks = world_size - first_rank;
  MOE_CHECK(expert_ranks >= 1, "expert map: no expert ranks (world size ", world_size, ")");
  ExpertMap map;
  map.replicas.assign(num_layers, std::vector<std::vector<int>>(num_experts));
  for (int l = 0; l < num_layers; ++l)
    for (int e = 0; e < num_experts; ++e)
      map.replicas[l][e] = {first_rank + (l * num_experts + e) % expert_ranks};
  return map;
}

ExpertMap parse_expert_map(const nlohmann::json& j, const std::string& source, int num_layers,
                           int num_experts, int first_rank, int world_size) {
  MOE_CHECK(j.is_object() && j.contains("layers") && j["layers"].is_array(), source,
            ": expected an object with a 'layers' array");
  ExpertMap map;
  map.replicas.assign(num_layers, std::vector<std::vector<int>>(num_experts));
  std::set<int> seen_layers;
  for (const auto& entry : j["layers"]) {
    MOE_CHECK(entry.is_object() && entry.contains("layer") && entry["layer"].is_number_integer(),
              source, ": every entry of 'layers' needs an integer 'layer'");
    // Read wide and checked before narrowing: 4294967299 must not pass as layer 3.
    const int64_t wide_layer = entry["layer"].get<int64_t>();
    MOE_CHECK(wide_layer >= 0 && wide_layer < num_layers, source, ": layer ", entry["layer"].dump(),
              " does not exist (the model has ", num_layers, " sparse layers)");
    const int layer = int(wide_layer);
    MOE_CHECK(seen_layers.insert(layer).second, source, ": layer ", layer, " is listed twice");
    MOE_CHECK(entry.contains("experts") && entry["experts"].is_array() &&
                  int(entry["experts"].size()) == num_experts,
              source, ": layer ", layer, " must list ranks for each of its ", num_experts,
              " experts");
    for (int e = 0; e < num_experts; ++e) {
      const auto& ranks = entry["experts"][e];
      MOE_CHECK(ranks.is_array() && !ranks.empty(), source, ": layer ", layer, " expert ", e,
                " is not placed on any rank");
      std::set<int> distinct;
      for (const auto& r : ranks) {
        MOE_CHECK(r.is_number_integer(), source, ": layer ", layer, " expert ", e,
                  ": rank must be an integer, got ", r.dump());
        const int64_t wide_rank = r.get<int64_t>();
        MOE_CHECK(wide_rank >= first_rank && wide_rank < world_size, source, ": layer ", layer,
                  " expert ", e, " is placed on rank ", r.dump(), ", but the expert ranks are ",
                  first_rank, "..", world_size - 1);
        const int rank = int(wide_rank);
        MOE_CHECK(distinct.insert(rank).second, source, ": layer ", layer, " expert ", e,
                  " lists rank ", rank, " twice");
        map.replicas[layer][e].push_back(rank);
      }
    }
  }
  for (int l = 0; l < num_layers; ++l)
    MOE_CHECK(seen_layers.count(l), source, ": layer ", l, " is missing: its experts are unplaced");
  return map;
}

ExpertMap load_expert_map(const std::string& path, int num_layers, int num_experts, int first_rank,
                          int world_size) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open expert map");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    MOE_FAIL(path, ": not valid JSON: ", e.what());
  }
  return parse_expert_map(j, path, num_layers, num_experts, first_rank, world_size);
}

nlohmann::json expert_map_to_json(const ExpertMap& map) {
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < map.num_layers(); ++l)
    layers.push_back({{"layer", l}, {"experts", map.replicas[l]}});
  return {{"layers", layers}};
}

void check_expert_memory(const ExpertMap& map, size_t bytes_per_expert,
                         const std::vector<size_t>& budget, const std::string& source) {
  for (size_t rank = 0; rank < budget.size(); ++rank) {
    const size_t need = size_t(map.experts_on(int(rank))) * bytes_per_expert;
    MOE_CHECK(need <= budget[rank], source, ": rank ", rank, " would hold ",
              map.experts_on(int(rank)), " experts (", need / (1 << 20),
              " MiB) but has a budget of ", budget[rank] / (1 << 20), " MiB");
  }
}

}  // namespace moe
