#include "router/sim/placements.hpp"

#include <filesystem>

#include "router/placement.hpp"
#include "runtime/error.hpp"

namespace moe::sim {
namespace {

// "name:K" → K (default when there is no suffix).
int suffix_of(const std::string& spec, const std::string& name, int fallback) {
  if (spec.size() == name.size()) return fallback;
  try {
    return std::stoi(spec.substr(name.size() + 1));
  } catch (const std::exception&) {
    MOE_FAIL("placement '", spec, "': expected ", name, ":INTEGER");
  }
}

bool named(const std::string& spec, const std::string& name) {
  return spec == name || spec.rfind(name + ":", 0) == 0;
}

}  // namespace

ExpertMap make_placement(const std::string& spec, const ClusterConfig& c, const Profile& profile,
                         const std::vector<RoutingRecord>& trace, int L, int E, uint64_t seed) {
  const int first = c.first_expert_rank(), N = c.experts;
  if (spec == "round-robin") return round_robin_expert_map(L, E, first, c.world_size());
  if (named(spec, "replicated")) {
    const int K = suffix_of(spec, "replicated", 2);
    MOE_CHECK(K >= 1 && K <= N, "placement '", spec, "': copies must be 1..", N,
              " (the expert ranks)");
    ExpertMap map = round_robin_expert_map(L, E, first, c.world_size());
    for (int l = 0; l < L; ++l)
      for (int e = 0; e < E; ++e) {
        const int home = (l * E + e) % N;
        for (int k = 1; k < K; ++k) map.replicas[l][e].push_back(first + (home + k * N / K) % N);
      }
    return map;
  }
  if (spec == "all") {
    ExpertMap map;
    map.replicas.assign(L, std::vector<std::vector<int>>(E, c.expert_ranks()));
    return map;
  }
  if (spec == "random") return random_expert_map(L, E, c.expert_ranks(), seed);
  if (named(spec, "placed")) {
    PlacementProblem problem;
    problem.profile = &profile;
    problem.load = mean_expert_load(trace, L, E);
    problem.ranks = c.expert_ranks();
    problem.bytes_per_expert = size_t(2) * profile.d_model * profile.d_ff * sizeof(float);
    problem.extra_replicas = suffix_of(spec, "placed", 0);
    MOE_CHECK(problem.extra_replicas >= 0, "placement '", spec, "': replicas must be >= 0");
    return place_experts(problem);
  }
  MOE_CHECK(std::filesystem::exists(spec), "placement '", spec,
            "' is neither round-robin, replicated:K, all, random, placed[:R] nor an existing file");
  return load_expert_map(spec, L, E, first, c.world_size());
}

}  // namespace moe::sim
