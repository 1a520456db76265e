#!/usr/bin/env bash
# Distributed failures end the run with a non-zero exit and one line naming the rank (and host,
# and layer where there is one), within the deadline — never a hang, never a complete-looking
# output file. Usage: fault.sh BUILD_DIR FIXTURE_DIR CASE
set -uo pipefail
build=$1 fixture=$2 case=$3
moe=$build/moe tool=$build/tests/fixture_tool
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -n ${job:-} ]] && kill -9 $job 2>/dev/null' EXIT
source "$(dirname "$0")/../../launch/mpirun_flags.sh"
mpirun=${MOE_MPIRUN:-mpirun}  # tests/multinode/mpirun.sh runs the same across two hosts
host2=${MOE_RANK2_HOST:-[^)]*}  # the host rank 2 must be named with (any, unless given)
"$tool" requests "$fixture" >"$work/in.jsonl"
model=$fixture/model

expect_failure() {  # expect_failure REGEX SECONDS_LIMIT -- command...
  local regex=$1 limit=$2
  shift 3
  local start=$SECONDS
  timeout 120 "$@" >"$work/stdout" 2>"$work/stderr"
  local status=$? took=$((SECONDS - start))
  echo "exit $status after ${took}s; our lines on stderr:"
  grep '^moe' "$work/stderr"
  ((status != 0)) || { echo "FAIL: exit status 0"; exit 1; }
  ((status != 124)) || { echo "FAIL: hung until the test's own timeout"; exit 1; }
  ((took <= limit)) || { echo "FAIL: took ${took}s, limit ${limit}s"; exit 1; }
  grep -Eq "$regex" "$work/stderr" || { echo "FAIL: stderr does not match: $regex"; cat "$work/stderr"; exit 1; }
  [[ ! -e $work/out.jsonl ]] || { echo "FAIL: an output file was left behind"; exit 1; }
  echo "ok: $case"
}

# Pid of the process that is rank $1 of this test's job (Open MPI puts the rank in each
# environment; the input file, in this test's own folder, tells the job from another test's
# `moe generate` ranks running beside it). Run in $(...), it fails that substitution (callers
# follow with `|| exit 1`), not the test.
pid_of_rank() {
  local pid
  pid=$("$(dirname "$0")/../pids_with_env.sh" "OMPI_COMM_WORLD_RANK=$1" \
    --cmdline "--input $work/many.jsonl" | head -n 1)
  [[ -n $pid ]] || { echo "FAIL: rank $1 of the job not found" >&2; exit 1; }
  echo "$pid"
}

# Many prompts (400, or $prompts), one per batch, answers printed as they finish: the run is in
# full swing once the first answer appears. Extra arguments go to moe generate.
long_run() {
  # The fixture's requests over and over, each with an id of its own (ids must be unique).
  python3 -c 'import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for i in range(int(sys.argv[2])):
    print(json.dumps(dict(lines[i % len(lines)], id=i)))' "$work/in.jsonl" "${prompts:-400}" >"$work/many.jsonl"
  "$mpirun" "${MPIRUN_FLAGS[@]}" -np "${np:-3}" "$moe" generate --model "$model" --input "$work/many.jsonl" \
    --output "$work/out.jsonl" --batch-size "${batch:-1}" --max-new-tokens 64 --deadline "$@" \
    >"$work/stdout" 2>"$work/stderr" &
  job=$!
  for _ in $(seq 1 200); do
    grep -q '^\[' "$work/stdout" 2>/dev/null && return
    sleep 0.1
  done
  echo "FAIL: the run never started answering"; exit 1
}

wait_failure() {  # wait_failure REGEX LIMIT
  local start=$SECONDS
  local status
  for _ in $(seq 1 $(( $2 * 10 ))); do
    kill -0 $job 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 $job 2>/dev/null; then echo "FAIL: still running after $2 s"; tail -n 20 "$work/stderr"; exit 1; fi
  wait $job; status=$?; job=
  echo "exit $status after $((SECONDS - start))s; our lines on stderr:"; grep '^moe' "$work/stderr"
  ((status != 0)) || { echo "FAIL: exit status 0"; exit 1; }
  grep -Eq "$1" "$work/stderr" || { echo "FAIL: stderr does not match: $1"; cat "$work/stderr"; exit 1; }
  [[ ! -e $work/out.jsonl ]] || { echo "FAIL: an output file was left behind"; exit 1; }
  echo "ok: $case"
}

map() { echo "{\"layers\": [$1]}" >"$work/map.json"; }

# --on-rank-failure continue: mpirun --enable-recovery keeps the job when a rank dies, and exits 0
# whatever happens (Open MPI 4.1), so the status is the one rank 0 writes (as launch/moe-mpirun
# reads it).
export MOE_EXIT_STATUS_FILE=$work/status
continue_run() {  # continue_run MAP_ARGS...: a long run that goes on after a lost rank
  MPIRUN_FLAGS+=(--enable-recovery)
  long_run 3 --on-rank-failure continue "$@"
}
status_written() { cat "$work/status" 2>/dev/null || echo "none"; }

# The lost rank ($lost) is reported and stopped, the run completes, and its answers equal a run
# with no fault (ids; the latencies differ).
expect_went_on() {  # expect_went_on PID LIMIT
  local start=$SECONDS pid2=$1
  for _ in $(seq 1 $(( $2 * 10 ))); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
  if kill -0 $job 2>/dev/null; then echo "FAIL: still running after $2 s"; tail -n 20 "$work/stderr"; exit 1; fi
  wait $job; job=
  echo "status $(status_written) after $((SECONDS - start))s; our lines on stderr:"; grep '^moe' "$work/stderr"
  [[ $(status_written) == 0 ]] || { echo "FAIL: exit status $(status_written)"; cat "$work/stderr"; exit 1; }
  grep -Eq "^moe: warning: rank $lost \(host [^)]*\) is lost: no answer within the 3 s deadline at (sparse layer [0-9]+|dense FFN [0-9]+), step [0-9]+; (it is stopped|no live rank shares its host to stop it,) and the run goes on" "$work/stderr" ||
    { echo "FAIL: the lost rank is not reported"; exit 1; }
  grep -q "^lost rank(s): $lost (host " "$work/stdout" || { echo "FAIL: the summary does not name the lost rank"; exit 1; }
  ! kill -0 "$pid2" 2>/dev/null || { echo "FAIL: the lost rank's process $pid2 still exists"; exit 1; }
  mv "$work/out.jsonl" "$work/faulted.jsonl"
  "$mpirun" "${MPIRUN_FLAGS[@]}" -np "${np:-3}" "$moe" generate --model "$model" --input "$work/many.jsonl" \
    --output "$work/out.jsonl" --batch-size 1 --max-new-tokens 64 --expert-map "$work/map.json" \
    "${layout[@]}" --quiet >/dev/null
  python3 - "$work/out.jsonl" "$work/faulted.jsonl" <<'PY'
import json, sys
def ids(path):
    return [(a["id"], a["output_ids"]) for a in map(json.loads, open(path))]
clean, faulted = ids(sys.argv[1]), ids(sys.argv[2])
assert len(clean) == 400 and clean == faulted, f"{sum(a != b for a, b in zip(clean, faulted))} answers differ"
print(f"ok: {len(clean)} answers equal to the run without a fault")
PY
}
layers=$(for l in $(seq 0 $(($("$tool" replicated-map "$model" 3 | grep -o '"layer"' | wc -l) - 1))); do
  printf '%s{"layer": %d, "experts": [[1],[2],[1],[2],[1],[2],[1],[2]]}' "$([[ $l -gt 0 ]] && echo ,)" "$l"; done)

case $case in
  map_missing_rank)
    map "${layers/\[\[1\]/[[7]}"
    expect_failure "map.json: layer 0 expert 0 is placed on rank 7, but the expert ranks are 1..2" 30 -- \
      "$mpirun" "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/out.jsonl" --expert-map "$work/map.json" ;;
  map_unplaced_expert)
    map "${layers/\[\[1\]/[[]}"
    expect_failure "map.json: layer 0 expert 0 is not placed on any rank" 30 -- \
      "$mpirun" "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/out.jsonl" --expert-map "$work/map.json" ;;
  map_over_memory)
    expect_failure "rank 1 would hold .* experts .* but has a budget of 0 MiB" 30 -- \
      "$mpirun" "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/out.jsonl" --memory-per-rank 1000 ;;
  expert_rank_killed)
    long_run 10
    kill -9 "$(pid_of_rank 2)" || exit 1
    wait_failure "rank 0 \(host .*\) terminated by the launcher while (waiting for rank\(s\) .*2 \(host $host2\) at (sparse layer [0-9]+|dense FFN [0-9]+|the lm_head), step [0-9]+|.*(sparse layer|dense FFN) [0-9]+|.*the lm_head)" 10 ;;
  expert_rank_silent)
    long_run 3
    kill -STOP "$(pid_of_rank 2)" || exit 1
    wait_failure "(deadline passed with no answer while waiting for rank\(s\) 2 \(host $host2\)|rank 2 \(host $host2\) did not complete a data transfer before the deadline while).* (sparse layer [0-9]+|dense FFN [0-9]+|the lm_head), step [0-9]+" 15 ;;
  expert_rank_killed_continue | expert_rank_silent_continue | expert_rank_silent_continue_pingpong | \
  expert_rank_silent_continue_two_attention_ranks)
    "$tool" replicated-map "$model" 3 >"$work/map.json"  # every expert on ranks 1 and 2
    extra=() layout=() lost=2  # layout: what the run without a fault needs of extra
    # With two lanes, both lanes' exchanges are in flight when the rank is lost.
    [[ $case == *pingpong ]] && { batch=4; extra=(--micro-batches 2 --policy round-robin); }
    if [[ $case == *two_attention_ranks ]]; then  # the other attention rank hears of it from rank 0
      np=4 batch=2 lost=3 extra=(--attention-ranks 2) layout=(--attention-ranks 2)
      map "$(echo "$layers" | sed 's/\[\[1\],\[2\],\[1\],\[2\],\[1\],\[2\],\[1\],\[2\]\]/[[2,3],[3,2],[2,3],[3,2],[2,3],[3,2],[2,3],[3,2]]/g')"
    fi
    continue_run --expert-map "$work/map.json" "${extra[@]}"
    pid2=$(pid_of_rank $lost) || exit 1
    kill "-$([[ $case == *killed* ]] && echo KILL || echo STOP)" "$pid2"
    expect_went_on "$pid2" 20 ;;
  continue_without_replica)  # expert 1 of every layer is on rank 2 only: the run cannot go on
    map "$layers"
    continue_run --expert-map "$work/map.json"
    kill -STOP "$(pid_of_rank 2)" || exit 1
    start=$SECONDS
    for _ in $(seq 1 100); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
    kill -0 $job 2>/dev/null && { echo "FAIL: still running after 10 s"; exit 1; }
    wait $job; job=
    echo "status $(status_written) after $((SECONDS - start))s"; grep '^moe' "$work/stderr"
    [[ $(status_written) == 1 ]] || { echo "FAIL: exit status $(status_written), expected 1"; exit 1; }
    grep -Eq "rank\(s\) 2 \(host $host2\) lost, and expert [1357] of sparse layer [0-9]+ has no other replica: the run cannot go on" "$work/stderr" ||
      { echo "FAIL: the error does not name the rank and the expert"; cat "$work/stderr"; exit 1; }
    [[ ! -e $work/out.jsonl ]] || { echo "FAIL: an output file was left behind"; exit 1; }
    echo "ok: $case" ;;
  continue_needs_recovery)  # without mpirun --enable-recovery, refused before any work
    expect_failure "error: rank 0 \\(host [^)]*\\): --on-rank-failure continue: Open MPI's mpirun ends the whole job when one rank dies; start it with mpirun --enable-recovery" 30 -- \
      "$mpirun" "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/out.jsonl" --on-rank-failure continue ;;
  colocated_rank_silent)  # co-located ranks: a stopped one is named by a rank that waits for it
    np=3 batch=2 prompts=20000 long_run 3 --colocate  # co-located, 400 take well under a second
    kill -STOP "$(pid_of_rank 2)" || exit 1
    wait_failure "(deadline passed with no (answer while waiting for|work from) rank\(s\) 2 \(host $host2\)|rank 2 \(host $host2\) did not complete a data transfer before the deadline while)" 15 ;;
  coordinator_silent)  # every rank ends within the deadline (+ half a second, + 1 s), naming rank 0
    long_run 3
    kill -STOP "$(pid_of_rank 0)" || exit 1
    wait_failure "rank [12] \\(host [^)]*\\): no work from attention rank\\(s\\) 0 \\(host [^)]*\\) for 3.5 s while serving: stopped or hung" 6 ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
