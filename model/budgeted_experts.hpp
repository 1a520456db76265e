// Experts under a memory budget in one process (SwapMoE): only the committee's pages of the mapped
// checkpoint are resident; the router's choices go through the residency's miss policy, missed
// experts are loaded in the step when the policy says so (wait, on-demand), and a dynamic
// committee swaps in the background (ExpertSwapper). Outputs of wait and on-demand equal the
// all-resident model's: the pages hold the same values wherever they are.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "model/expert_swapper.hpp"
#include "model/experts.hpp"
#include "router/residency.hpp"

namespace moe {

// ‖wi‖·‖wo‖ (Frobenius) of every expert, [moe_layer][expert]: read once at load. Each expert's
// pages are given back after it is read, so that computing the norms never holds more than one.
std::vector<std::vector<double>> expert_weight_norms(const ModelWeights& weights,
                                                     const ModelConfig& config);

// The bytes of one expert's weights (float32 wi and wo).
size_t expert_bytes(const ModelConfig& config);

class BudgetedExpertExecutor final : public ExpertExecutor {
 public:
  // Maps in the residency's initial committee (every other expert's pages are given back).
  BudgetedExpertExecutor(Device& device, const ModelConfig& config, const ModelWeights& weights,
                         ExpertResidency& residency);
  ~BudgetedExpertExecutor() override;

  void adjust_routing(int moe_layer, const float* logits, const float* x, int d,
                      GateResult& gate) override;
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override;

  // Waits for the swaps in flight.
  void drain() { swapper_->drain(); }
  // The largest resident memory of this process seen after a load or swap (from /proc).
  uint64_t peak_resident_bytes() const { return peak_resident_bytes_.load(); }

 private:
  void map_in(int moe_layer, int expert) const;
  void give_back(int moe_layer, int expert) const;
  void sample_resident_memory();

  Device& device_;
  const ModelConfig& config_;
  std::vector<std::vector<ExpertWeights>> experts_;  // [moe_layer][expert]
  ExpertResidency& residency_;
  std::vector<ExpertGroup> groups_;
  std::atomic<uint64_t> peak_resident_bytes_{0};
  std::unique_ptr<ExpertSwapper> swapper_;
};

}  // namespace moe
