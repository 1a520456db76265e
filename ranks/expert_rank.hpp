// An expert rank: loads only the experts the run plan places on it, then serves sparse-layer work
// from the coordinator until told to shut down.
#pragma once

#include "ranks/run_plan.hpp"
#include "runtime/mpi/world.hpp"

namespace moe {

// Returns the process exit code. Failures are sent to rank 0 (which ends the run naming this rank).
int run_expert_rank(const World& world, const RunPlan& plan);

}  // namespace moe
