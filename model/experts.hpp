// A sparse layer's experts as one grouped pass: route, permute tokens so each expert's rows are
// contiguous, run every expert once on its block, then un-permute scaled by the router probability.
// The ExpertExecutor is where the distributed runtime takes over: the local one runs on this
// process's device; a remote one sends the blocks to the ranks holding the experts.
#pragma once

#include "model/weights.hpp"
#include "router/expert_dispatch.hpp"
#include "router/gate.hpp"
#include "runtime/device.hpp"

namespace moe {

class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;
  // rows_in[dispatch.rows(), d_model] grouped by expert → rows_out, same order. `step` counts
  // forward passes (0 = encoder, k = k-th decoder call) for messages and traces.
  virtual void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
                   const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) = 0;
  // Called after the gate, before the dispatch is planned, with the router logits[T, E] and its
  // inputs x[T, d]: an executor whose experts are not all at hand (a memory budget) may change
  // the gate's choices here.
  virtual void adjust_routing(int /*moe_layer*/, const float* /*logits*/, const float* /*x*/,
                              int /*d*/, GateResult& /*gate*/) {}
  // Whether this dense FFN block goes through run_dense (it runs on the model's device otherwise).
  virtual bool runs_dense(const BlockWeights& block) const { return false; }
  // y[rows, d_model] = the dense block's FFN of x.
  virtual void run_dense(const BlockWeights& block, int64_t step, int rows, const float* x,
                         float* y) {}
  // The lm_head's vocabulary columns [0, lm_head_kept(vocab)) run on the model's device; the
  // rest, when any, through start_lm_head (the decoder's final states [rows, d_model]), which
  // finish_lm_head answers with each row's largest logit there and its id (the lowest of equal
  // ones).
  virtual int lm_head_kept(int vocab) const { return vocab; }
  virtual void start_lm_head(int64_t step, int rows, const float* states) {}
  virtual void finish_lm_head(std::vector<float>& best_logit, std::vector<int>& best_id) {}
};

class LocalExpertExecutor final : public ExpertExecutor {
 public:
  LocalExpertExecutor(Device& device, const ModelConfig& config)
      : device_(device), config_(config) {}
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override;

 private:
  Device& device_;
  const ModelConfig& config_;
  std::vector<ExpertGroup> groups_;
};

// rows[i] = x[token_of_row[i]]
void gather_rows(const float* x, const ExpertDispatch& dispatch, int d, float* rows);
// x[token_of_row[i]] += probability[token] * rows[i]; dropped tokens get nothing (residual only).
void scatter_add_rows(const float* rows, const ExpertDispatch& dispatch,
                      const std::vector<float>& probability, int d, float* x);

}  // namespace moe
