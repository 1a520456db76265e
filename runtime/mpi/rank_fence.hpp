// Fencing a rank declared lost (--on-rank-failure continue): before the run goes on without it,
// the process is stopped for good, so that a rank that was only paused (SIGSTOP, a stall) cannot
// come back and answer, and the launcher can end the job. Only a rank on the same host can do it;
// the process is checked by its id and start time, so that a reused id is never hit.
#pragma once

#include <functional>

#include "runtime/mpi/world.hpp"

namespace moe {

// /proc/PID/stat's start time (clock ticks after boot), or 0 where it cannot be read.
long process_start_ticks(long pid);

// SIGKILLs `rank`'s process when it runs on this host and is still the process the run started
// with (otherwise it has ended, or runs elsewhere: nothing to do here).
void fence_if_local(const World& world, int rank);

// Whether a rank for which live(rank) holds runs on `rank`'s host and so can fence it.
bool fenceable(const World& world, int rank, const std::function<bool(int)>& live);

}  // namespace moe
