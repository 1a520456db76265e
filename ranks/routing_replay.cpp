#include "ranks/routing_replay.hpp"

#include <cstdio>
#include <numeric>
#include <random>

#include "ranks/remote_experts.hpp"
#include "router/latency_policy.hpp"
#include "router/sim/bench_schedule.hpp"
#include "router/statistics.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

// One (expert map, policy) pair with its own policy state and measurements.
struct Setting {
  std::string map_name, policy_name;
  std::unique_ptr<DispatchPolicy> policy;
  std::unique_ptr<RemoteExpertExecutor> executor;
  std::vector<double> latency_us;  // per counted call, in (pass, trace record) order
  double policy_us = 0, imbalance_sum = 0;
  int64_t tokens = 0;
  int balanced_calls = 0;
};

std::vector<Setting> make_settings(Coordinator& coordinator, const ReplaySettings& o) {
  const int d = coordinator.config().d_model;
  std::vector<Setting> settings;
  for (const auto& [map_name, map] : o.maps)
    for (const auto& policy_name : o.policies) {
      Setting s;
      s.map_name = map_name;
      s.policy_name = policy_name;
      s.policy = make_dispatch_policy(policy_name, o.context);
      if (o.samples) {
        MOE_CHECK(o.context.profile, "latency samples need a profile");
        s.policy = std::make_unique<LatencySampleRecorder>(std::move(s.policy), *o.context.profile,
                                                           d, *o.samples);
      }
      s.executor = std::make_unique<RemoteExpertExecutor>(*coordinator.exchanges(), map, *s.policy);
      settings.push_back(std::move(s));
    }
  return settings;
}

CallRecord call_record(const Setting& s, int pass, size_t j, const RoutingRecord& rec, int rows,
                       double latency_us, int world_size) {
  CallRecord c{s.map_name, s.policy_name, 0,    pass, int64_t(j), rec.batch,
               rec.step,   rec.layer,     rows, -1,   latency_us, s.executor->last().policy_us,
               {}};
  std::vector<RankFeedback> by_rank(world_size);
  for (const auto& f : s.executor->last().feedback) by_rank[f.rank] = f;
  for (int r = 1; r < world_size; ++r)
    c.ranks.push_back({s.executor->last().rows_per_rank[r], by_rank[r].latency_us,
                       by_rank[r].compute_us, by_rank[r].queue_us, by_rank[r].other_cpu_us});
  return c;
}

ComparisonRow comparison_row(const Setting& s) {
  ComparisonRow row;
  row.expert_map = s.map_name;
  row.policy = s.policy_name;
  row.calls = int(s.latency_us.size());
  const double total_us = std::accumulate(s.latency_us.begin(), s.latency_us.end(), 0.0);
  row.mean_us = total_us / std::max(row.calls, 1);
  row.p99_us = percentile(s.latency_us, 0.99);
  row.tokens_per_s = double(s.tokens) / std::max(total_us * 1e-6, 1e-9);
  row.imbalance = s.balanced_calls ? s.imbalance_sum / s.balanced_calls : 0;
  row.policy_us = s.policy_us / std::max(row.calls, 1);
  row.paired_latency_us = s.latency_us;
  return row;
}

}  // namespace

std::vector<ComparisonRow> replay_routing(Coordinator& coordinator,
                                          const std::vector<RoutingRecord>& trace,
                                          const ReplaySettings& o, PerCallCsv* per_call) {
  const ModelConfig& c = coordinator.config();
  const int d = c.d_model, N = coordinator.world().size();
  std::vector<Setting> settings = make_settings(coordinator, o);
  // The trace's calls, planned once; rows are random (their values do not change the cost).
  std::vector<GateResult> gates;
  std::vector<ExpertDispatch> dispatches;
  size_t most_rows = 0;
  for (const auto& rec : trace) {
    gates.push_back({rec.expert, rec.probability, rec.kept, rec.entropy});
    dispatches.emplace_back();
    plan_expert_dispatch(gates.back(), c.num_experts, dispatches.back());
    most_rows = std::max(most_rows, size_t(dispatches.back().rows()));
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> rows_in(std::max<size_t>(most_rows, 1) * d), rows_out(rows_in.size());
  for (auto& v : rows_in) v = normal(rng);

  // Latencies are kept by (pass, trace call), so that settings compare call for call.
  const size_t T = trace.size(), S = settings.size();
  for (auto& s : settings) s.latency_us.assign(size_t(o.passes) * T, 0.0);
  sim::BenchSchedule schedule(S, T);
  for (int pass = 0; pass <= o.passes; ++pass) {
    schedule.start_pass();
    for (size_t i = 0; i < T; ++i)
      for (const sim::BenchSlot& slot : schedule.slot(i)) {
        Setting& s = settings[slot.setting];
        const size_t j = slot.call;
        SparseFfnWeights layer;
        layer.moe_layer = trace[j].layer;
        const double start = now_us();
        s.executor->run(layer, trace[j].step, gates[j], dispatches[j], rows_in.data(),
                        rows_out.data());
        const double us = now_us() - start;
        if (pass == 0) continue;  // warm-up pass: policies learn, caches fill
        s.latency_us[size_t(pass - 1) * T + j] = us;
        s.policy_us += s.executor->last().policy_us;
        s.tokens += dispatches[j].rows();
        if (per_call) per_call->add(call_record(s, pass, j, trace[j], dispatches[j].rows(), us, N));
        const auto& per_rank = s.executor->last().rows_per_rank;
        const double imbalance = max_over_mean({per_rank.begin(), per_rank.end()}, 1, N);
        if (imbalance > 0) {
          s.imbalance_sum += imbalance;
          ++s.balanced_calls;
        }
      }
    std::fprintf(stderr, "done: pass %d of %d over %zu calls, %zu settings\n", pass, o.passes, T,
                 S);
  }
  std::vector<ComparisonRow> rows;
  for (const auto& s : settings) rows.push_back(comparison_row(s));
  return rows;
}

}  // namespace moe
