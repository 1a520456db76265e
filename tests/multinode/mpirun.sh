#!/usr/bin/env bash
# mpirun across the two namespace nodes of nodes.sh (MOE_NODES_ID): runs on node1 with the hostfile
# MOE_HOSTFILE, Open MPI's daemon on node2 started through agent.sh, TCP between the nodes and
# shared memory within one (btl self,vader,tcp; out-of-band and MPI traffic only on 10.77.0.0/24).
# Takes mpirun's arguments; a `--mca btl LIST` among them (launch/mpirun_flags.sh's self,vader) is
# replaced by the above.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${MOE_NODES_ID:?mpirun.sh: MOE_NODES_ID is not set}" "${MOE_HOSTFILE:?mpirun.sh: MOE_HOSTFILE is not set}"
args=()
while (($#)); do
  if [[ $1 == --mca && ${2:-} == btl ]]; then
    shift 3
    continue
  fi
  args+=("$1")
  shift
done
exec "$here/nodes.sh" exec "$MOE_NODES_ID" node1 mpirun --hostfile "$MOE_HOSTFILE" \
  --mca plm_rsh_agent "$here/agent.sh" --mca btl self,vader,tcp \
  --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 "${args[@]}"
