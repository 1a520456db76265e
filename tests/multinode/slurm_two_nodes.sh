#!/usr/bin/env bash
# launch/slurm on a two-node SLURM cluster: the namespace nodes of nodes.sh, slurmctld on node1,
# one slurmd per node (own NodeName, spool and log), munged's socket shared (tests/slurm/cluster.sh).
#   1. `launch/slurm/submit --nodes 2` of the default model's run config with TCP between the
#      nodes: mpirun inside the allocation (its daemon on node2 started by SLURM) gives the same
#      answers as a direct run on this host, with rank 2 on node2 in the per-rank table;
#   2. the same with the ranks started by `srun --mpi=pmix`.
# On exit the daemons, the nodes and everything they ran are gone (checked).
# Usage: slurm_two_nodes.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
start=$SECONDS
step() { echo "[$((SECONDS - start))s] $*"; }
export MOE_NODES_ID=${MOE_NODES_ID:-s$(printf %x $$)}
source "$root/tests/slurm/cluster.sh"
NODES=(node1 node2) ADDRESSES=(10.77.0.1 10.77.0.2)
on_node() { "$here/nodes.sh" exec "$MOE_NODES_ID" "$@"; }

finish() {
  local status=$1
  cluster_stop "$status"
  status=$?
  "$here/nodes.sh" down "$MOE_NODES_ID"
  "$here/nodes.sh" left "$MOE_NODES_ID" || { echo "FAIL: left behind (above)"; status=1; }
  exit "$status"
}
cluster_install
trap 'finish $?' EXIT
trap 'exit 130' INT TERM
"$here/nodes.sh" up "$MOE_NODES_ID"
cluster_start

python3 - "$root/configs/runs/default.json" "$work/two-nodes.json" "$root" <<'PY'
import json, os, sys
source, target, root = sys.argv[1:]
cfg = json.load(open(source))
cfg["model"] = os.path.join(root, cfg["model"])
cfg["workload"]["input"] = os.path.join(root, cfg["workload"]["input"])
cfg["description"] = "The default job over two nodes, TCP between them."
cfg["mca"] = {"btl": "self,vader,tcp", "btl_tcp_if_include": "10.77.0.0/24", "oob_tcp_if_include": "10.77.0.0/24"}
json.dump(cfg, open(target, "w"), indent=1)
PY

run_direct

expect_two_nodes_equal_to_direct() {
  ((job_status == 0)) || { echo "FAIL: job $job did not complete"; exit 1; }
  grep -q "job $job: 2 node(s) (node\[1-2\]), 3 task(s), coordinator on node1" "$work/out/moe-$job.log" ||
    { echo "FAIL: job $job did not get both nodes"; exit 1; }
  "$build/tests/fixture_tool" compare "$work/direct.jsonl" "$work/out/moe-$job.jsonl" 0
  diff <(grep '^\[' "$work/direct.out") <(grep '^\[' "$work/out/moe-$job.log")
  local hosts
  hosts=$(grep -E '^[0-9]+ ' "$work/out/moe-$job.log" | awk '{print $1 "@" $2}' | tr '\n' ' ')
  [[ $hosts == "0@node1 1@node1 2@node2 " ]] || { echo "FAIL: ranks on hosts $hosts"; exit 1; }
  step "ok: job $job over node1 and node2 ($hosts) equals the direct run"
}

step "1. mpirun inside a two-node allocation"
submit "$work/two-nodes.json" --nodes 2
grep -q '^+ mpirun ' "$work/out/moe-$job.log"
expect_two_nodes_equal_to_direct

step "2. the same with srun --mpi=pmix"
submit "$work/two-nodes.json" --nodes 2 --launcher srun
grep -q '^+ env OMPI_MCA_btl=self,vader,tcp .* srun --mpi=pmix ' "$work/out/moe-$job.log"
expect_two_nodes_equal_to_direct
