// What a simulated (or measured) run is judged by: mean and p99 sparse-layer latency, tokens per
// second and load imbalance — the same definitions as `moe bench-routing` uses for measured runs.
#pragma once

#include <vector>

#include "router/sim/event_model.hpp"

namespace moe::sim {

struct Summary {
  int calls = 0;
  double mean_us = 0, p99_us = 0;
  double tokens_per_s = 0;    // kept tokens of the counted calls / their span (SimResult::span_us)
  double imbalance = 0;       // mean over calls of max/mean rows per expert rank (calls with rows)
  double busy_imbalance = 0;  // max/mean compute time per expert rank over the whole run
  double policy_us = 0;       // mean wall time of the policy's assign() on this machine
};

Summary summarise(const SimResult& result, int first_expert_rank, int world_size);

}  // namespace moe::sim
