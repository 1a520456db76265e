// The coordinator's side of a sparse layer: choose a replica rank for every kept token (the
// dispatch policy), cut the expert-grouped rows into one block per expert rank, send counts then
// blocks, and put the replies back in place. Every expert rank takes part in every layer, with
// zero rows if need be, so no rank is ever left waiting.
#pragma once

#include <vector>

#include "model/experts.hpp"
#include "router/dispatch_policy.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/transport.hpp"

namespace moe {

class RemoteExpertExecutor final : public ExpertExecutor {
 public:
  RemoteExpertExecutor(const World& world, DataTransport& transport, const ExpertMap& map,
                       DispatchPolicy& policy, int d_model, double deadline_seconds,
                       RankRecorder& recorder);
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override;
  // Rows each rank (index) received in the last call.
  const std::vector<int>& last_rows_per_rank() const { return last_rows_; }
  // Every expert rank's reply to the last call, in arrival order.
  const std::vector<RankFeedback>& last_feedback() const { return feedback_; }
  // Wall time of the dispatch policy's decision in the last call (µs).
  double last_policy_us() const { return last_policy_us_; }

 private:
  const World& world_;
  DataTransport& transport_;
  const ExpertMap& map_;
  DispatchPolicy& policy_;
  int d_model_;
  double deadline_seconds_;
  RankRecorder& recorder_;
  int64_t step_ = 0;
  // Reused per layer: serving rank and slot of every row, per-rank blocks.
  std::vector<int> rank_of_row_, slot_of_row_;
  std::vector<std::vector<float>> send_, recv_;
  std::vector<RankFeedback> feedback_;
  std::vector<int> last_rows_;
  double last_policy_us_ = 0;
};

}  // namespace moe
