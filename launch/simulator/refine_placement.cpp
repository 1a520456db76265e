#include "launch/simulator/refine_placement.hpp"

#include <algorithm>
#include <memory>

#include "launch/simulator/metrics.hpp"
#include "runtime/error.hpp"

namespace moe::sim {

double simulated_mean_us(const ClusterConfig& cluster, const ExpertMap& map,
                         const std::vector<RoutingRecord>& trace, const RefineOptions& options) {
  std::vector<std::unique_ptr<DispatchPolicy>> owned;
  std::vector<DispatchPolicy*> policies;
  for (int c = 0; c < cluster.coordinators; ++c) {
    PolicyContext mine = options.context;
    mine.seed = options.context.seed + uint64_t(c);
    owned.push_back(make_dispatch_policy(options.policy, mine));
    policies.push_back(owned.back().get());
  }
  const SimResult result = simulate(cluster, map, policies, trace, options.sim);
  MOE_CHECK(!result.calls.empty(), "placement by simulation: the trace has no calls");
  double total = 0;
  for (const auto& call : result.calls) total += call.latency_us();
  return total / double(result.calls.size());
}

RefineResult refine_by_simulation(const ClusterConfig& cluster, const PlacementProblem& problem,
                                  const std::vector<std::pair<std::string, ExpertMap>>& candidates,
                                  const std::vector<RoutingRecord>& trace, const RefineOptions& options) {
  MOE_CHECK(!candidates.empty(), "placement by simulation: no candidate map");
  RefineResult out;
  // Only maps within every rank's memory may start the search (the baselines ignore memory).
  auto fits = [&](const ExpertMap& map) {
    for (int r : problem.ranks)
      if (size_t(map.experts_on(r)) > expert_capacity(problem, r)) return false;
    return true;
  };
  for (const auto& [name, map] : candidates) {
    if (!fits(map)) continue;
    const double us = simulated_mean_us(cluster, map, trace, options);
    ++out.evaluations;
    out.candidates_us.push_back({name, us});
    if (out.started_from.empty() || us < out.mean_us) {
      out.map = map;
      out.mean_us = us;
      out.started_from = name;
    }
  }
  MOE_CHECK(!out.started_from.empty(), "placement by simulation: no candidate map fits the ranks' memory");
  int max_rank = 0;
  for (int r : problem.ranks) max_rank = std::max(max_rank, r);
  std::vector<size_t> held(max_rank + 1, 0);
  for (int r : problem.ranks) held[r] = size_t(out.map.experts_on(r));

  // One pass over every (layer, expert, replica, destination); a move is kept when it lowers the
  // simulated mean by more than a part in 10^4 (the model is deterministic; this stops ties).
  const int L = out.map.num_layers(), E = out.map.num_experts();
  bool improved = true;
  while (improved && out.evaluations < options.max_evaluations) {
    improved = false;
    for (int l = 0; l < L && out.evaluations < options.max_evaluations; ++l)
      for (int e = 0; e < E && out.evaluations < options.max_evaluations; ++e) {
        auto& ranks = out.map.replicas[l][e];
        for (size_t i = 0; i < ranks.size() && out.evaluations < options.max_evaluations; ++i)
          for (int to : problem.ranks) {
            if (out.evaluations >= options.max_evaluations) break;
            if (std::find(ranks.begin(), ranks.end(), to) != ranks.end()) continue;
            if (held[to] >= expert_capacity(problem, to)) continue;
            const int from = ranks[i];
            ranks[i] = to;
            const double us = simulated_mean_us(cluster, out.map, trace, options);
            ++out.evaluations;
            if (us < out.mean_us * (1 - 1e-4)) {
              out.mean_us = us;
              --held[from];
              ++held[to];
              ++out.moves;
              improved = true;
              break;  // this replica has moved; go on with the next
            }
            ranks[i] = from;
          }
      }
  }
  return out;
}

}  // namespace moe::sim
