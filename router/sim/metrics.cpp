#include "router/sim/metrics.hpp"

#include <algorithm>

#include "router/statistics.hpp"

namespace moe::sim {

Summary summarise(const SimResult& result, int first_expert_rank, int world_size) {
  Summary s;
  s.calls = int(result.calls.size());
  if (result.calls.empty()) return s;
  std::vector<double> latencies;
  double total_us = 0, policy_us = 0, imbalance_sum = 0, rows = 0;
  int imbalance_calls = 0;
  for (const auto& call : result.calls) {
    latencies.push_back(call.latency_us());
    total_us += call.latency_us();
    policy_us += call.policy_us;
    rows += call.rows;
    const std::vector<double> per_rank(call.rows_per_rank.begin(), call.rows_per_rank.end());
    const double m = max_over_mean(per_rank, first_expert_rank, world_size);
    if (m > 0) {
      imbalance_sum += m;
      ++imbalance_calls;
    }
  }
  s.mean_us = total_us / s.calls;
  s.p99_us = percentile(latencies, 0.99);
  s.tokens_per_s = rows / std::max(result.span_us * 1e-6, 1e-12);
  s.imbalance = imbalance_calls ? imbalance_sum / imbalance_calls : 0;
  s.busy_imbalance = max_over_mean(result.busy_us, first_expert_rank, world_size);
  s.policy_us = policy_us / s.calls;
  return s;
}

}  // namespace moe::sim
