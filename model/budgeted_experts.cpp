#include "model/budgeted_experts.hpp"

namespace moe {

void BudgetedExpertExecutor::run(const SparseFfnWeights& layer, int64_t, const GateResult&,
                                 const ExpertDispatch& dispatch, const float* rows_in,
                                 float* rows_out) {
  std::vector<int> experts;
  std::vector<ExpertGroup> groups;
  for (int e = 0; e + 1 < int(dispatch.offsets.size()); ++e) {
    if (dispatch.count(e) == 0) continue;
    experts.push_back(e);
    groups.push_back({pages_.weights(layer.moe_layer, e), dispatch.offsets[e], dispatch.count(e)});
  }
  pages_.run(layer.moe_layer, experts, std::move(groups), rows_in, rows_out);
}

}  // namespace moe
