// The run's exit status in a file (MOE_EXIT_STATUS_FILE, written by rank 0), for launchers whose
// own status does not carry it: Open MPI 4.1's mpirun --enable-recovery, which --on-rank-failure
// continue needs, exits 0 whatever the ranks' status (launch/moe-mpirun reads the file instead).
#pragma once

namespace moe {

// Writes `code` to $MOE_EXIT_STATUS_FILE when it is set; a failure to write is reported on stderr
// (the launcher then finds no status and reports the run failed).
void record_exit_status(int code);

}  // namespace moe
