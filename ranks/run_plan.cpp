#include "ranks/run_plan.hpp"

#include "runtime/mpi/control_plane.hpp"
#include "runtime/wire.hpp"

namespace moe {
RunPlan share_plan(const World& world, const RunPlan& plan_on_root) {
  const std::string bytes = broadcast_bytes(world.rank() == 0 ? encode_message(plan_on_root) : "");
  return decode_message<RunPlan>(open_envelope(0, bytes));
}

}  // namespace moe
