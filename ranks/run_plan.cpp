#include "ranks/run_plan.hpp"

#include <cmath>

#include "runtime/mpi/control_plane.hpp"
#include "runtime/wire.hpp"

namespace moe {

std::pair<int, int> RunPlan::lm_head_columns(int rank, int vocab) const {
  const int kept = vocab - int(std::lround(lm_head_on_experts * vocab));
  if (is_attention_rank(rank)) return {0, kept};
  const int64_t rest = vocab - kept, i = rank - attention_ranks, n = expert_ranks();
  return {kept + int(rest * i / n), kept + int(rest * (i + 1) / n)};
}

RunPlan share_plan(const World& world, const RunPlan& plan_on_root) {
  const std::string bytes = broadcast_bytes(world.rank() == 0 ? encode_message(plan_on_root) : "");
  return decode_message<RunPlan>(open_envelope(0, bytes));
}

}  // namespace moe
