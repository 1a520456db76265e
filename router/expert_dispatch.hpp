// The permutation that makes each expert's tokens contiguous: kept tokens sorted by expert,
// keeping position order within an expert. This is where the distributed runtime cuts a layer.
#pragma once

#include <vector>

#include "router/gate.hpp"

namespace moe {

struct ExpertDispatch {
  std::vector<int> offsets;       // [E + 1]: rows of expert e are [offsets[e], offsets[e+1])
  std::vector<int> token_of_row;  // [kept tokens]: the token each permuted row came from
  int rows() const { return offsets.empty() ? 0 : offsets.back(); }
  int count(int e) const { return offsets[e + 1] - offsets[e]; }
};

void plan_expert_dispatch(const GateResult& gate, int num_experts, ExpertDispatch& out);

}  // namespace moe
