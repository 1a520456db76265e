# mpirun flags for runs on one small host (the experiment scripts and the tests source this):
# more ranks than cores, root allowed, no busy-polling progress thread
# fights for the two cores, and a short abort grace period.
MPIRUN_FLAGS=(--oversubscribe --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1)
if [[ $(id -u) -eq 0 ]]; then
  MPIRUN_FLAGS+=(--allow-run-as-root)
fi
