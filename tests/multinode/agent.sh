#!/usr/bin/env bash
# Open MPI's remote-launch agent for the namespace nodes of tests/multinode/nodes.sh, in place of
# ssh (--mca plm_rsh_agent): `agent.sh HOST WORDS...` runs the command line WORDS (which Open MPI
# writes for a remote shell, as ssh would pass it) on HOST. MOE_NODES_ID names the node pair.
set -euo pipefail
host=$1
shift
exec "$(dirname "$0")/nodes.sh" exec "${MOE_NODES_ID:?agent.sh: MOE_NODES_ID is not set}" "$host" \
  bash -c "$*"
