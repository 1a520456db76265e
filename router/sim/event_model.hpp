// The discrete-event model of sparse-layer calls on a modelled cluster. It mirrors one call of
// the live runtime (ranks/remote_experts.cpp, ranks/expert_rank.cpp):
//   1. the coordinator's DispatchPolicy assigns every kept row to a replica rank (the router/
//      object itself, not a copy of its logic) and permutes the rows (copy cost, optional);
//   2. it posts a header to every expert rank in rank order — every rank takes part, with zero
//      rows if need be; a message costs the sender message_overhead_us of its port and arrives
//      `latency` later; a waiting rank notices it as its polling allows (PollModel, optional);
//   3. the rank then takes its block (rows × d_model float32): B/bandwidth on the sender's and the
//      receiver's port of that link kind (inside a node, between nodes), whichever frees later;
//   4. an expert rank serves blocks first-in first-out; a block's compute is the sum over its
//      experts of the class curve at that expert's rows; where a node has `cores`, its computing
//      expert ranks share them (processor sharing, at most one core each);
//   5. each rank replies (a header; with "push" the rows ride along); the coordinator notices the
//      replies one receive at a time, and once it has them all the policy observes them (latency
//      since dispatch, compute, queueing) in the order noticed; with "pull" (the runtime today) it
//      then takes every block in rank order, each rank's blocking send holding that rank until
//      then; the call ends when the last rows are in (plus the un-permute copy).
// With M coordinators, batch b of the trace runs on coordinator b mod M, each coordinator running
// its calls one after another (closed loop, coordinator_gap_us between calls) with a policy of
// its own, all of them sharing the expert ranks' queues and ports.
// Several settings (placement, policy) can run interleaved as `moe bench-routing` measures them
// (BenchSchedule: turns call by call, each setting from its own offset in the trace), so that what
// a call leaves behind (a rank still napping in its blocking send, a quota's budget) falls on
// whichever setting comes next, as it does in the measured run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "router/dispatch_policy.hpp"
#include "router/expert_map.hpp"
#include "router/policy_factory.hpp"
#include "router/routing_trace.hpp"
#include "router/sim/cluster.hpp"

namespace moe::sim {

struct SimOptions {
  int d_model = 0;                  // bytes of a row = d_model * 4
  int warmup_passes = 1;            // passes over the trace not counted (policies learn)
  int passes = 1;                   // counted passes
  bool charge_policy_time = false;  // delay dispatch by the measured wall time of assign()
};

struct CallResult {
  int coordinator = 0;
  int pass = 0;
  int64_t batch = 0, step = 0;
  int layer = 0;
  int rows = 0;                    // kept tokens dispatched
  double start_us = 0;             // dispatch (before the policy runs)
  double end_us = 0;               // the last reply has arrived
  double policy_us = 0;            // wall time of assign() on this machine
  std::vector<int> rows_per_rank;  // index = rank
  // index = rank, as bench-routing's --per-call reports them: the reply's arrival from the call's
  // start, the block's compute and its wait before compute (header in to block in hand) as the
  // rank measures them
  std::vector<double> latency_us_per_rank, compute_us_per_rank, queue_us_per_rank;
  double latency_us() const { return end_us - start_us; }
};

struct SimResult {
  std::vector<CallResult> calls;  // counted calls, in completion order
  std::vector<double> busy_us;    // per rank: compute time in counted passes
  // The time the counted calls took: first dispatch to last end when the setting ran alone; the
  // sum of their latencies when it was interleaved with others (one coordinator, bench-routing's
  // tokens/s).
  double span_us = 0;
};

// One setting of an interleaved run: its expert map and a policy per coordinator.
struct Setting {
  const ExpertMap* map = nullptr;
  std::vector<DispatchPolicy*> policies;
};

// One `name` policy per coordinator, coordinator c's seeded context.seed + c.
std::vector<std::unique_ptr<DispatchPolicy>> coordinator_policies(const std::string& name,
                                                                  const PolicyContext& context,
                                                                  int coordinators);

// policies[c] serves coordinator c (size = cluster.coordinators). Ranks of `map` are cluster
// ranks (expert ranks first_expert_rank()..world_size()-1).
SimResult simulate(const ClusterConfig& cluster, const ExpertMap& map,
                   const std::vector<DispatchPolicy*>& policies,
                   const std::vector<RoutingRecord>& trace, const SimOptions& options);

// The settings interleaved call by call in bench-routing's order (BenchSchedule seeded
// `order_seed`, warm-up passes included); one result per setting. Needs one coordinator, as
// bench-routing has.
std::vector<SimResult> simulate_interleaved(const ClusterConfig& cluster,
                                            const std::vector<Setting>& settings,
                                            const std::vector<RoutingRecord>& trace,
                                            const SimOptions& options, uint32_t order_seed = 7);

}  // namespace moe::sim
