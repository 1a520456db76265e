// The coordinator's side of `moe bench-routing`: a recorded routing trace replayed through the
// real expert ranks under several settings (expert map, dispatch policy) in one run. The settings
// take turns call by call, each from its own offset in the trace (sim::BenchSchedule), so a
// machine whose speed drifts slows every setting alike, and every setting runs every call once
// per pass, so the comparison is paired call for call. Token values are random: expert cost does
// not depend on them; which expert and which rank does.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "ranks/coordinator.hpp"
#include "ranks/report.hpp"
#include "router/expert_map.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"

namespace moe {

struct ReplaySettings {
  std::vector<std::pair<std::string, ExpertMap>> maps;  // name, map
  std::vector<std::string> policies;
  PolicyContext context;            // what the policies are made from
  std::ostream* samples = nullptr;  // latency samples of every call, when wanted (CSV)
  int passes = 3;                   // counted passes over the trace, after one warm-up
};

// One comparison row per (map, policy); each counted call also goes to `per_call` if given.
std::vector<ComparisonRow> replay_routing(Coordinator& coordinator,
                                          const std::vector<RoutingRecord>& trace,
                                          const ReplaySettings& settings, PerCallCsv* per_call);

}  // namespace moe
