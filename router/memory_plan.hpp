// The committee planner (SwapMoE's offline part): committee sizes per sparse layer from a recorded
// routing trace, so that a memory budget and a latency budget are met while the most routed
// probability mass stays resident. Quality proxy: the share of the trace's routed probability
// mass whose expert is in its layer's committee, each committee holding its layer's experts of
// most mass. Latency: the all-resident time per generated token, plus, for the policies that load
// a missed expert in the step (wait, on-demand), the trace's missed experts per token times one
// expert's load time (on-demand's count: an upper bound for wait, whose loads then stay).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "router/residency.hpp"
#include "router/routing_trace.hpp"

namespace moe {

struct MemoryPlanInputs {
  int layers = 0, experts = 0;
  size_t expert_bytes = 0;
  double base_ms_per_token = 0;  // the all-resident run's
  double load_ms = 0;            // one missed expert: loaded from disk, given back after use
  MissPolicy policy = MissPolicy::kSubstitute;
};

struct MemoryPlan {
  std::vector<int> committees;            // per sparse layer
  std::vector<std::vector<int>> members;  // per sparse layer: its experts of most routed mass
  size_t memory_bytes = 0;   // the committees, plus one expert in flight (a swap or a load)
  double resident_mass = 0;  // share of the routed probability mass, 0..1
  double ms_per_token = 0;   // predicted
  bool feasible = false;
  std::string why;  // when not feasible: which budget it misses and by how much
};

// The plan for `memory_bytes` and `latency_ms` (0: no latency budget).
MemoryPlan plan_memory(const std::vector<RoutingRecord>& trace, const MemoryPlanInputs& inputs,
                       size_t memory_bytes, double latency_ms);

// {"committees", "members", "memory_bytes", "resident_mass", "ms_per_token", "policy"} and back; a
// bad file is refused naming it and the field.
std::string memory_plan_to_json(const MemoryPlan& plan, MissPolicy policy);
MemoryPlan load_memory_plan(const std::string& path, int layers, int experts);

}  // namespace moe
