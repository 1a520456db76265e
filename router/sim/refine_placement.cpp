#include "router/sim/refine_placement.hpp"

#include <algorithm>
#include <memory>

#include "router/sim/metrics.hpp"
#include "runtime/error.hpp"

namespace moe::sim {

double simulated_mean_us(const ClusterConfig& cluster, const ExpertMap& map,
                         const std::vector<RoutingRecord>& trace, const RefineOptions& options) {
  const auto owned = coordinator_policies(options.policy, options.context, cluster.coordinators);
  std::vector<DispatchPolicy*> policies;
  for (const auto& p : owned) policies.push_back(p.get());
  const SimResult result = simulate(cluster, map, policies, trace, options.sim);
  MOE_CHECK(!result.calls.empty(), "placement by simulation: the trace has no calls");
  return summarise(result, cluster.first_expert_rank(), cluster.world_size()).mean_us;
}

RefineResult refine_by_simulation(const ClusterConfig& cluster, const PlacementProblem& problem,
                                  const std::vector<std::pair<std::string, ExpertMap>>& candidates,
                                  const std::vector<RoutingRecord>& trace,
                                  const RefineOptions& options) {
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
  MOE_CHECK(!out.started_from.empty(),
            "placement by simulation: no candidate map fits the ranks' memory");
  // Sweeps over every (layer, expert, replica, destination); a move is kept when it lowers the
  // simulated mean by more than a part in 10^4 (the model is deterministic; this stops ties).
  for (bool improved = true; improved;) {
    improved = false;
    for (auto& layer : out.map.replicas)
      for (auto& ranks : layer)
        for (int& rank : ranks)
          for (int to : problem.ranks) {
            if (std::find(ranks.begin(), ranks.end(), to) != ranks.end() ||
                size_t(out.map.experts_on(to)) >= expert_capacity(problem, to))
              continue;
            if (out.evaluations >= options.max_evaluations) return out;
            const int from = rank;
            rank = to;
            const double us = simulated_mean_us(cluster, out.map, trace, options);
            ++out.evaluations;
            if (us < out.mean_us * (1 - 1e-4)) {
              out.mean_us = us;
              ++out.moves;
              improved = true;
              break;  // this replica has moved; go on with the next
            }
            rank = from;
          }
  }
  return out;
}

}  // namespace moe::sim
