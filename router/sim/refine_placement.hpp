// Placement refined by simulation: starting from the best of some candidate maps, move one
// replica at a time to another rank while the event model (router/sim/event_model.hpp)
// says the trace's mean sparse-layer latency falls. The table model of router/placement.hpp adds
// up profiled medians; the event model also has what they leave out — queues, polling, ranks
// sharing cores and memory, and a CPU quota's stalls, which depend on how much work the rank did
// just before (a quota'd rank's median wall time cannot say that).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "router/placement.hpp"
#include "router/policy_factory.hpp"
#include "router/sim/cluster.hpp"
#include "router/sim/event_model.hpp"

namespace moe::sim {

struct RefineOptions {
  std::string policy = "uniform";  // how replicas share an expert's tokens while evaluating
  PolicyContext context;           // for the policy (profile, latency model, seed)
  SimOptions sim;                  // d_model, passes (warm-up passes let latency-aware learn)
  int max_evaluations = 400;       // simulations at most (every candidate is simulated once)
};

struct RefineResult {
  ExpertMap map;
  std::string started_from;                                   // the candidate the search began with
  std::vector<std::pair<std::string, double>> candidates_us;  // each candidate's simulated mean
  double mean_us = 0;  // the refined map's simulated mean latency
  int moves = 0, evaluations = 0;
};

// Simulated mean sparse-layer latency of `map` under `options.policy` (one policy object per
// coordinator, seeded as moe simulate seeds them).
double simulated_mean_us(const ClusterConfig& cluster, const ExpertMap& map,
                         const std::vector<RoutingRecord>& trace, const RefineOptions& options);

// Starts from the candidate within memory with the lowest simulated mean (a baseline such as
// round-robin carries no extra replicas; the search only moves replicas); then each replica in
// turn moves to the first destination that lowers it, keeping each (layer, expert) on distinct
// ranks and each rank within expert_capacity(problem, rank); sweeps repeat until one moves
// nothing or the evaluations run out.
RefineResult refine_by_simulation(const ClusterConfig& cluster, const PlacementProblem& problem,
                                  const std::vector<std::pair<std::string, ExpertMap>>& candidates,
                                  const std::vector<RoutingRecord>& trace,
                                  const RefineOptions& options);

}  // namespace moe::sim
