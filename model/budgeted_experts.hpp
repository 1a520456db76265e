// Experts under a memory budget in one process (SwapMoE): the router's choices go through the
// residency's miss policy, and ResidentExperts runs each sparse layer's experts, loading missed
// ones in the step where the policy says so (wait, on-demand). Outputs of wait and on-demand equal
// the all-resident model's: the pages hold the same values wherever they are.
#pragma once

#include "model/experts.hpp"
#include "model/resident_experts.hpp"

namespace moe {

class BudgetedExpertExecutor final : public ExpertExecutor {
 public:
  BudgetedExpertExecutor(Device& device, const ModelConfig& config, const ModelWeights& weights,
                         ExpertResidency& residency)
      : pages_(config, weights, residency, device) {}

  void adjust_routing(int moe_layer, const float* logits, const float* x, int d,
                      GateResult& gate) override {
    pages_.residency().route(moe_layer, logits, x, d, gate);
  }
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override;

  ResidentExperts& pages() { return pages_; }

 private:
  ResidentExperts pages_;
};

}  // namespace moe
