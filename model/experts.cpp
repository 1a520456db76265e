#include "model/experts.hpp"

#include <cstring>

#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

void LocalExpertExecutor::run(const SparseFfnWeights& layer, int64_t, const GateResult&,
                              const ExpertDispatch& dispatch, const float* rows_in,
                              float* rows_out) {
  groups_.clear();
  for (int e = 0; e < config_.num_experts; ++e) {
    if (dispatch.count(e) == 0) continue;
    MOE_CHECK(layer.resident(e), "sparse layer ", layer.moe_layer, ": expert ", e,
              " is not loaded in this process");
    groups_.push_back({layer.expert(e), dispatch.offsets[e], dispatch.count(e)});
  }
  device_.expert_ffn(groups_, rows_in, rows_out, config_.d_model, config_.d_ff);
}

void gather_rows(const float* x, const ExpertDispatch& dispatch, int d, float* rows) {
  parallel_for(dispatch.rows(), [&](int first, int last) {
    for (int i = first; i < last; ++i)
      std::memcpy(rows + size_t(i) * d, x + size_t(dispatch.token_of_row[i]) * d,
                  sizeof(float) * d);
  });
}

void scatter_add_rows(const float* rows, const ExpertDispatch& dispatch,
                      const std::vector<float>& probability, int d, float* x) {
  parallel_for(dispatch.rows(), [&](int first, int last) {
    for (int i = first; i < last; ++i) {
      const int t = dispatch.token_of_row[i];
      const float p = probability[t];
      const float* r = rows + size_t(i) * d;
      float* out = x + size_t(t) * d;
      for (int j = 0; j < d; ++j) out[j] += r[j] * p;
    }
  });
}

}  // namespace moe
