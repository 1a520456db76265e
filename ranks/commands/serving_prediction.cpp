#include "ranks/commands/serving_prediction.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

namespace moe {

std::string serving_curves_mismatch(const Profile& profile, const RunPlan& plan, int threads) {
  const ServingCurves& s = profile.serving;
  if (s.empty()) return "the profile has no serving curves (moe profile --serving-rows)";
  if ((plan.expert_ranks() > 0 || plan.colocated) && profile.ranks.empty())
    return "the profile has no expert rank's link to model the exchanges by";
  if (s.threads != threads)
    return "the serving curves were measured with " + std::to_string(s.threads) +
           " thread(s) per rank, this run has " + std::to_string(threads);
  if (plan.expert_ranks() > profile.num_experts)
    return "the serving model weighs at most as many expert ranks as experts per layer (" +
           std::to_string(profile.num_experts) + ")";
  // One process, or co-located ranks: every dense FFN and the lm_head in line (the model moves
  // the expert ranks' measured share there).
  if (plan.expert_ranks() == 0) return "";
  if (s.dense_ffn != plan.dense_placement())
    return "the serving curves were measured with another placement of the dense FFNs "
           "(--dense-ffn)";
  if (std::abs(s.lm_head_on_experts - plan.lm_head_on_experts) > 1e-9)
    return "the serving curves were measured with another share of the lm_head on the expert "
           "ranks (--lm-head-on-experts)";
  return "";
}

sim::ServingHost serving_host(const Profile& profile, const std::vector<std::string>& hosts) {
  sim::ServingHost host;
  const bool one_host =
      !hosts.empty() && std::all_of(hosts.begin(), hosts.end(),
                                    [&](const std::string& h) { return h == hosts.front(); });
  if (one_host) host.cores = std::max(1u, std::thread::hardware_concurrency());
  host.contention = profile.contention;
  host.contention.value = std::max(host.contention.value, 0.0);
  return host;
}

int choose_micro_batches(const Profile& profile, sim::ServingLayout layout,
                         const sim::ServingWorkload& workload, const sim::ServingHost& host,
                         const std::vector<int>& counts,
                         std::vector<sim::ServingPrediction>* predictions) {
  constexpr double kWorthIt = 1.03;
  int best = 0;
  double best_rate = 0;
  for (int m : counts) {
    layout.micro_batches = m;
    const sim::ServingPrediction p = sim::predict_serving(profile, layout, workload, host);
    if (predictions) predictions->push_back(p);
    if (best == 0 || p.tokens_per_s >= kWorthIt * best_rate) best = m, best_rate = p.tokens_per_s;
  }
  return best;
}

}  // namespace moe
