// Latency-aware dispatch: choose, for every expert's kept tokens, which of its replicas serve
// them so that the slowest rank's predicted completion time (the MLP latency model over the
// features of router/latency_model.hpp) is smallest.
//  1. Greedy, largest expert first: all of an expert's tokens go to the replica whose predicted
//     completion time, with them added, is smallest; each rank's load is updated as it goes.
//  2. Refinement: while it lowers the predicted time of the slowest rank, move all or part of one
//     of its experts' tokens to another replica of that expert (the part where the two ranks'
//     predicted times cross, found by bisection).
// Whole experts come first because a rank runs one GEMM pair per expert it was given: splitting an
// expert makes two ranks read its weights, which at small token counts is most of the cost. The
// profiled cost of a rank is therefore the sum over its experts of the curve at that expert's
// rows. The ranks' recent latencies and queueing come from the replies (observe). Under memory
// budgets a rank that does not hold an expert resident also pays the profiled load for it.
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
  int tokens = 0;          // tokens assigned in this call
  double profiled_us = 0;  // Σ over its experts of the profiled curve at that expert's rows
  double recent_latency_us = 0;
  double recent_queue_us = 0;
};

// The features of sending `group_tokens` tokens of one expert (mean score/entropy given) to a
// rank in state `load` that already holds `expert_tokens` rows of that same expert in this call.
LatencyFeatures latency_features(double mean_score, double mean_entropy, int group_tokens,
                                 int expert_tokens, const RankLoad& load,
                                 const RankProfile& profile, int d_model);

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
  // Whether every profiled rank has a measured load time: a replica that would load the expert
  // then costs that much more (in the profiled-cost feature), so a resident one is preferred
  // unless it is busier by more than a load.
  bool weighs_residency() const override;
  void set_residency(ResidentFn resident) override { resident_ = std::move(resident); }

 private:
  std::shared_ptr<const LatencyModel> model_;
  ResidentFn resident_;  // empty: every replica resident
  Profile profile_;
  std::vector<const RankProfile*> profile_of_;  // [rank]: O(1) lookups on the hot path
  int d_model_;
  RankHistory history_;
  // Predicted completion time of `rank` holding `load`, the last change being `group_rows` rows
  // of an expert with the given mean router score and entropy (0 when the rank has no tokens).
  double predict_us(int rank, const RankLoad& load, int group_rows, double score,
                    double entropy) const;
  // Cost of `rows` rows of one expert on `rank` (its profiled curve).
  double curve_us(int rank, int rows) const;

  // Reused per call: each rank's load and predicted time; rows per (rank, expert); per expert
  // the mean router score and entropy of its tokens.
  std::vector<RankLoad> loads_;
  std::vector<double> finish_us_;
  std::vector<int> expert_rows_;
  std::vector<double> expert_score_, expert_entropy_;
  std::vector<int> order_;
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
  bool weighs_residency() const override { return inner_->weighs_residency(); }
  void set_residency(ResidentFn resident) override {
    resident_ = resident;
    inner_->set_residency(std::move(resident));
  }

 private:
  std::unique_ptr<DispatchPolicy> inner_;
  ResidentFn resident_;
  Profile profile_;
  int d_model_;
  std::ostream& out_;
  RankHistory history_;
  std::vector<LatencyFeatures> pending_;  // per rank, features of the last assignment
  std::vector<uint8_t> has_pending_;
};

}  // namespace moe
