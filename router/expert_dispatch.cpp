#include "router/expert_dispatch.hpp"

namespace moe {

void plan_expert_dispatch(const GateResult& gate, int num_experts, ExpertDispatch& out) {
  const int T = static_cast<int>(gate.expert.size());
  out.offsets.assign(num_experts + 1, 0);
  for (int t = 0; t < T; ++t)
    if (gate.kept[t]) ++out.offsets[gate.expert[t] + 1];
  for (int e = 0; e < num_experts; ++e) out.offsets[e + 1] += out.offsets[e];
  out.token_of_row.assign(out.offsets.back(), 0);
  std::vector<int> next(out.offsets.begin(), out.offsets.end() - 1);
  for (int t = 0; t < T; ++t)
    if (gate.kept[t]) out.token_of_row[next[gate.expert[t]]++] = t;
}

}  // namespace moe
