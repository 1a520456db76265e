#!/usr/bin/env bash
# The runtime across two hosts: two network namespaces as node1 and node2 (nodes.sh), Open MPI's
# daemon on node2 started through agent.sh, TCP between the nodes (mpirun.sh). Cases:
#   equal_np3        ranks 0,1 on node1, 2 on node2: forward and generate equal the single-process
#                    run, with the static policy and with replicas under latency-aware routing
#                    (profiled and trained across the nodes)
#   equal_np5        ranks 0,1 on node1, 2-4 on node2: replicas, uniform policy; and disaggregated
#                    layouts (2 attention + 3 expert ranks, 1 + 4) with ping-pong micro-batches
#   far_rank_killed  rank 2, on node2, killed: the run ends, naming rank 2 and node2
#   far_rank_silent  rank 2, on node2, stopped: the deadline ends the run, naming rank 2 and node2
#   far_rank_killed_continue  rank 2, on node2, killed under --on-rank-failure continue: the run
#                    goes on over TCP with the replicas on rank 1 and equals a run without a fault
#   profile_far_link moe profile measures the link to each rank: a block to the rank on node2 (TCP)
#                    costs more than one to its neighbour on node1 (shared memory)
#   killed           this script, killed (SIGKILL) in the middle of equal_np5, leaves nothing
# After every case no namespace, link, hosts file or process of its node pair is left.
# Usage: multinode_test.sh BUILD_DIR CASE
set -uo pipefail
build=$(cd "$1" && pwd)
case=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fixtures=$root/tests/reference/fixtures
tiny=$root/configs/models/switch-tiny
export MOE_NODES_ID=${MOE_NODES_ID:-n$(printf %x $$)}
export MOE_MPIRUN=$here/mpirun.sh MOE_HOSTFILE
work=$(mktemp -d "${TMPDIR:-/tmp}/moe-multinode.XXXXXX")
finish() {
  local status=$?
  "$here/nodes.sh" down "$MOE_NODES_ID"
  if ! "$here/nodes.sh" left "$MOE_NODES_ID"; then
    echo "FAIL: left behind (above)"
    status=1
  fi
  rm -rf "$work"
  exit $status
}
trap finish EXIT
trap 'exit 130' INT TERM
"$here/nodes.sh" up "$MOE_NODES_ID" || { echo "FAIL: could not create the nodes"; exit 1; }
hosts() {  # hosts SLOTS1 SLOTS2: a hostfile filled in order, node1 first
  MOE_HOSTFILE=$work/hostfile-$1-$2
  printf 'node1 slots=%d\nnode2 slots=%d\n' "$1" "$2" >"$MOE_HOSTFILE"
}
source "$root/launch/mpirun_flags.sh"

case $case in
  equal_np3)
    hosts 2 1
    "$root/tests/mpi/equal_to_single_process.sh" "$build" "$fixtures/switch8_f32" 3 &&
      "$root/tests/mpi/equal_to_single_process.sh" "$build" "$fixtures/switch8_f32" 3 replicas latency-aware
    ;;
  equal_np5)
    hosts 2 3
    "$root/tests/mpi/equal_to_single_process.sh" "$build" "$fixtures/switch8_f32" 5 replicas uniform &&
      "$root/tests/mpi/layouts.sh" "$build" "$tiny" "$tiny/prompts.jsonl" static "2:3:2 1:4:2"
    ;;
  far_rank_killed)
    hosts 2 1
    MOE_RANK2_HOST=node2 "$root/tests/mpi/fault.sh" "$build" "$fixtures/switch8_f32" expert_rank_killed
    ;;
  far_rank_silent)
    hosts 2 1
    MOE_RANK2_HOST=node2 "$root/tests/mpi/fault.sh" "$build" "$fixtures/switch8_f32" expert_rank_silent
    ;;
  far_rank_killed_continue)
    hosts 2 1
    MOE_RANK2_HOST=node2 "$root/tests/mpi/fault.sh" "$build" "$fixtures/switch8_f32" expert_rank_killed_continue
    ;;
  profile_far_link)
    hosts 2 1
    "$MOE_MPIRUN" "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" profile --model "$tiny" --out "$work/profile.json" \
      --token-counts 1,4 --repeats 3 --deadline 60 >"$work/profile.log" 2>&1 ||
      { cat "$work/profile.log"; echo "FAIL: moe profile"; exit 1; }
    python3 - "$work/profile.json" <<'EOF'
import json, sys
profile = json.load(open(sys.argv[1]))
ranks = {r["rank"]: r for r in profile["ranks"]}
# What placement and routing charge for sending a rank the largest block profiled (256 rows) and
# taking its result back (RankProfile::round_trip_us).
block = 256 * profile["model"]["d_model"] * 4
cost = {r: 2 * (ranks[r]["link_latency_us"] + block / ranks[r]["link_bytes_per_us"]) for r in (1, 2)}
for r in (1, 2):
    print(f"rank {r} on {ranks[r]['host']}: link latency {ranks[r]['link_latency_us']:.1f} us, "
          f"{ranks[r]['link_bytes_per_us']:.0f} bytes/us; a {block}-byte block there and back {cost[r]:.1f} us")
assert ranks[1]["host"] == "node1" and ranks[2]["host"] == "node2", "ranks on the wrong hosts"
assert cost[2] > 1.3 * cost[1], f"the far rank ({cost[2]:.1f} us) does not cost more than the near one ({cost[1]:.1f} us)"
print(f"ok: a block to the rank on node2 costs {cost[2] / cost[1]:.1f}x one to its neighbour on node1")
EOF
    ;;
  killed)
    # A case in the middle of its work, killed without a chance to clean up: its guard must.
    victim=m$(printf %x $$)
    mkdir "$work/tmp"  # the victim's temporary files, removed with ours
    MOE_NODES_ID=$victim TMPDIR=$work/tmp "$0" "$build" equal_np5 >"$work/victim.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      pgrep -f "$build/moe" >/dev/null && ip netns pids "moe$victim-node2" 2>/dev/null | grep -q . && break
      sleep 0.1
    done
    ip netns pids "moe$victim-node2" | grep -q . || { cat "$work/victim.log"; echo "FAIL: never started"; exit 1; }
    kill -KILL $pid
    echo "killed the case (pid $pid) with processes on node2 running"
    for _ in $(seq 1 100); do
      "$here/nodes.sh" left "$victim" >/dev/null && break
      sleep 0.1
    done
    "$here/nodes.sh" left "$victim" || { echo "FAIL: left behind after 10 s (above)"; exit 1; }
    left=$("$root/tests/pids_with_env.sh" "MOE_NODES_ID=$victim")
    [[ -z $left ]] || { echo "FAIL: processes of the killed case still run: $left"; exit 1; }
    echo "ok: nothing of the killed case is left"
    ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
