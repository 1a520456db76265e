#include "router/dispatch_policy.hpp"

#include "runtime/error.hpp"

namespace moe {

void StaticPolicy::assign(int layer, const ExpertDispatch& d, const GateResult&,
                          const ExpertMap& map, std::vector<int>& rank_of_row) {
  rank_of_row.resize(d.rows());
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e)
    for (int r = d.offsets[e]; r < d.offsets[e + 1]; ++r)
      rank_of_row[r] = map.ranks_of(layer, e)[0];
}

void RoundRobinPolicy::assign(int layer, const ExpertDispatch& d, const GateResult&,
                              const ExpertMap& map, std::vector<int>& rank_of_row) {
  if (next_.empty()) next_.assign(map.num_layers(), std::vector<uint64_t>(map.num_experts(), 0));
  rank_of_row.resize(d.rows());
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e) {
    const auto& ranks = map.ranks_of(layer, e);
    for (int r = d.offsets[e]; r < d.offsets[e + 1]; ++r)
      rank_of_row[r] = ranks[next_[layer][e]++ % ranks.size()];
  }
}

void RandomPolicy::assign(int layer, const ExpertDispatch& d, const GateResult&,
                          const ExpertMap& map, std::vector<int>& rank_of_row) {
  rank_of_row.resize(d.rows());
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e) {
    const auto& ranks = map.ranks_of(layer, e);
    std::uniform_int_distribution<size_t> pick(0, ranks.size() - 1);
    for (int r = d.offsets[e]; r < d.offsets[e + 1]; ++r) rank_of_row[r] = ranks[pick(rng_)];
  }
}

void UniformPolicy::assign(int layer, const ExpertDispatch& d, const GateResult&,
                           const ExpertMap& map, std::vector<int>& rank_of_row) {
  rank_of_row.resize(d.rows());
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e) {
    const auto& ranks = map.ranks_of(layer, e);
    const int n = d.count(e), R = int(ranks.size());
    int row = d.offsets[e];
    for (int i = 0; i < R; ++i) {
      const int share = n / R + (i < n % R ? 1 : 0);
      for (int k = 0; k < share; ++k) rank_of_row[row++] = ranks[i];
    }
  }
}

std::unique_ptr<DispatchPolicy> make_basic_dispatch_policy(const std::string& name, uint64_t seed) {
  if (name == "static") return std::make_unique<StaticPolicy>();
  if (name == "round-robin") return std::make_unique<RoundRobinPolicy>();
  if (name == "random") return std::make_unique<RandomPolicy>(seed);
  if (name == "uniform") return std::make_unique<UniformPolicy>();
  MOE_FAIL("unknown dispatch policy '", name, "' (static, round-robin, random, uniform)");
}

}  // namespace moe
