// Latency-aware dispatch: each expert's kept tokens are cut into groups; groups go, largest
// first, to the replica whose predicted completion time (the MLP latency model over the features
// of router/latency_model.hpp) is smallest, updating each rank's load as groups are assigned.
// The ranks' recent latencies come from the replies (observe).
#pragma once

#include <memory>
#include <ostream>

#include "router/dispatch_policy.hpp"
#include "router/latency_model.hpp"
#include "router/profile.hpp"

namespace moe {

// The view of one rank the features are computed from: what it was given in this layer call so
// far and how it has behaved recently.
struct RankLoad {
  int tokens = 0;           // tokens assigned in this call
  double profiled_us = 0;   // profiled expert time of the groups assigned in this call
  double recent_latency_us = 0;
  double recent_queue_us = 0;
};

// The features of sending `group_tokens` tokens of one expert (mean score/entropy given) to a
// rank in state `load`.
LatencyFeatures latency_features(double mean_score, double mean_entropy, int group_tokens,
                                 const RankLoad& load, const RankProfile& profile, int d_model);

// Moving averages of each rank's reply latency and queueing, from feedback.
class RankHistory {
 public:
  void observe(const std::vector<RankFeedback>& feedback);
  RankLoad fresh(int rank) const;  // no tokens yet; the rank's recent averages

 private:
  std::vector<double> latency_, queue_;
};

class LatencyAwarePolicy final : public DispatchPolicy {
 public:
  LatencyAwarePolicy(std::shared_ptr<const LatencyModel> model, Profile profile, int d_model);
  std::string name() const override { return "latency-aware"; }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
  void observe(const std::vector<RankFeedback>& feedback) override { history_.observe(feedback); }

 private:
  std::shared_ptr<const LatencyModel> model_;
  Profile profile_;
  int d_model_;
  RankHistory history_;
};

// Wraps any policy and writes one latency sample per rank and layer call (the rank's final
// assignment as features, its measured reply latency as the target): training data for the
// latency model, from whatever policy ran.
class LatencySampleRecorder final : public DispatchPolicy {
 public:
  LatencySampleRecorder(std::unique_ptr<DispatchPolicy> inner, Profile profile, int d_model,
                        std::ostream& out);
  std::string name() const override { return inner_->name(); }
  void assign(int layer, const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
              std::vector<int>& rank_of_row) override;
  void observe(const std::vector<RankFeedback>& feedback) override;

 private:
  std::unique_ptr<DispatchPolicy> inner_;
  Profile profile_;
  int d_model_;
  std::ostream& out_;
  RankHistory history_;
  std::vector<LatencyFeatures> pending_;  // per rank, features of the last assignment
  std::vector<uint8_t> has_pending_;
};

}  // namespace moe
