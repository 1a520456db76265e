#!/usr/bin/env bash
# launch/moe-mpirun: a run config launched through it gives the same answers (ids and text) as
# the same workload under a direct mpirun; mixed thread counts get disjoint cores; a bad run
# config is rejected with one line on stderr before mpirun starts.
# Usage: moe_mpirun_test.sh BUILD_DIR CASE
set -euo pipefail
build=$(cd "$1" && pwd) case=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
launcher=$root/launch/moe-mpirun tool=$build/tests/fixture_tool
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/launch/mpirun_flags.sh"
tiny=$root/configs/models/switch-tiny

# The answers as `moe generate` prints them: "[id] prompt -> answer" lines.
answers() { grep '^\[' "$1"; }

equal_to_direct() {  # equal_to_direct CONFIG NP
  "$launcher" "$root/configs/runs/$1.json" --moe "$build/moe" --output "$work/launcher.jsonl" \
    >"$work/launcher.out" 2>"$work/launcher.err"
  cat "$work/launcher.err"
  local cmd=(mpirun "${MPIRUN_FLAGS[@]}" -np "$2" "$build/moe" generate --model "$tiny"
    --input "$tiny/prompts.jsonl" --batch-size 8 --max-new-tokens 24 --output "$work/direct.jsonl")
  echo "+ ${cmd[*]}"
  "${cmd[@]}" >"$work/direct.out"
  "$tool" compare "$work/direct.jsonl" "$work/launcher.jsonl" 0
  diff <(answers "$work/direct.out") <(answers "$work/launcher.out")
  # The summary table has the same columns and one row per rank.
  diff <(grep '^rank' "$work/direct.out") <(grep '^rank' "$work/launcher.out")
  [[ $(grep -cE '^[0-9]+ ' "$work/launcher.out") -eq $2 ]]
  echo "ok: $(answers "$work/launcher.out" | wc -l) answers equal to the direct mpirun run"
}

# A fake mpirun first on PATH: a rejected config must never reach it.
fake_mpirun() {
  mkdir -p "$work/bin"
  printf '#!/bin/sh\ntouch %s/mpirun-started\n' "$work" >"$work/bin/mpirun"
  chmod +x "$work/bin/mpirun"
}

reject() {  # reject REGEX  (the config is $work/run.json)
  fake_mpirun
  local status=0
  PATH=$work/bin:$PATH "$launcher" "$work/run.json" --moe "$build/moe" >"$work/out" 2>"$work/err" || status=$?
  echo "exit $status; stderr:"; cat "$work/err"
  ((status == 2)) || { echo "FAIL: exit status $status, expected 2"; exit 1; }
  [[ $(wc -l <"$work/err") -eq 1 ]] || { echo "FAIL: expected exactly one line on stderr"; exit 1; }
  [[ ! -s $work/out ]] || { echo "FAIL: something on stdout"; cat "$work/out"; exit 1; }
  grep -Eq "^moe-mpirun: $work/run.json: $1" "$work/err" || { echo "FAIL: stderr does not match: $1"; exit 1; }
  [[ ! -e $work/mpirun-started ]] || { echo "FAIL: mpirun was started"; exit 1; }
  echo "ok: rejected before mpirun started"
}

config() {  # config RANKS_JSON [MODEL] [EXTRA_FIELDS]
  cat >"$work/run.json" <<EOF
{"model": "${2:-$tiny}", "ranks": $1, ${3:-}
 "workload": {"input": "$tiny/prompts.jsonl", "batch_size": 8, "max_new_tokens": 24}}
EOF
}

cores=$(nproc)
case $case in
  equal_default) equal_to_direct default 3 ;;
  equal_bound)
    equal_to_direct two-ranks-bound 2
    grep -q -- '--map-by core --bind-to core' "$work/launcher.err" || { echo "FAIL: ranks not bound"; exit 1; } ;;
  rankfile)
    # Mixed thread counts over a two-host hostfile: each rank gets cores of its own, hosts fill in
    # order, and each app context sets its own OpenBLAS thread count.
    printf 'nodeA slots=4\nnodeB slots=4  # a comment\n' >"$work/hosts"
    config '["cpu:1", "cpu:2", "cpu:4", "cpu:1"]' "$tiny" "\"hostfile\": \"$work/hosts\","
    printf '#!/bin/sh\necho "  --devices arg"\n' >"$work/moe"   # a moe that offers --devices
    chmod +x "$work/moe"
    "$launcher" "$work/run.json" --moe "$work/moe" --dry-run 2>&1 | tee "$work/err"
    # nodeA takes ranks 0 and 1, rank 2 (4 cores) only fits on nodeB, rank 3 fills nodeA's last core.
    printf '  rank 0=nodeA slot=0\n  rank 1=nodeA slot=1-2\n  rank 2=nodeB slot=0-3\n  rank 3=nodeA slot=3\n' |
      diff - <(sed -n 2,5p "$work/err")
    grep -q -- "--hostfile $work/hosts --rankfile" "$work/err"
    grep -q -- "-np 1 -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1 .* : -np 1 -x OPENBLAS_NUM_THREADS=2 .* --devices cpu:1,cpu:2,cpu:4,cpu:1" "$work/err"
    echo "ok: disjoint cores per rank" ;;
  weight_formats)
    # A weight format per rank reaches moe as --devices, never folded into --threads.
    config '["cpu:1:int8", "cpu:1:int8", "cpu:1:bf16@0.5"]' "$tiny" '"oversubscribe": true,'
    "$launcher" "$work/run.json" --moe "$build/moe" --dry-run 2>&1 | tee "$work/err"
    grep -q -- "--devices cpu:1:int8,cpu:1:int8,cpu:1:bf16@0.5" "$work/err"
    config '["cpu:1:int8", "cpu:1:int8"]'
    "$launcher" "$work/run.json" --moe "$build/moe" --dry-run 2>&1 | tee "$work/err"
    grep -q -- "--devices cpu:1:int8,cpu:1:int8" "$work/err"
    echo "ok: formats passed per rank" ;;
  on_rank_failure_continue)
    # mpirun gets --enable-recovery (a dying rank must not end the job) and the status file, whose
    # status the launcher exits with: that mpirun itself exits 0 whatever happens.
    config '["cpu:1", "cpu:1", "cpu:1"]' "$tiny" '"oversubscribe": true, "on_rank_failure": "continue",'
    "$launcher" "$work/run.json" --moe "$build/moe" --dry-run 2>&1 | tee "$work/err"
    grep -q -- "--enable-recovery .* -x MOE_EXIT_STATUS_FILE .* --on-rank-failure continue" "$work/err"
    "$launcher" "$work/run.json" --moe "$build/moe" --output "$work/launcher.jsonl" >"$work/launcher.out"
    mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" generate --model "$tiny" --input "$tiny/prompts.jsonl" \
      --batch-size 8 --max-new-tokens 24 --output "$work/direct.jsonl" >"$work/direct.out"
    diff <(answers "$work/direct.out") <(answers "$work/launcher.out")
    status=0
    "$launcher" "$work/run.json" --moe "$build/moe" -- --expert-map "$work/no-such-map.json" \
      >"$work/out" 2>"$work/err" || status=$?
    grep '^moe' "$work/err"
    ((status == 1)) || { echo "FAIL: a failed run exits $status through the launcher, expected 1"; exit 1; }
    grep -q "no-such-map.json: cannot open expert map" "$work/err"
    echo "ok: same answers; a failed run's status survives mpirun --enable-recovery" ;;
  bad_on_rank_failure)
    config '["cpu:1", "cpu:1"]' "$tiny" '"on_rank_failure": "retry",'
    reject 'on_rank_failure: expected "abort" or "continue", got "retry"' ;;
  bad_weight_format)
    config '["cpu:1:fp8", "cpu:1"]'
    reject 'ranks\[0\]: unknown device "cpu:1:fp8"' ;;
  bad_unknown_device)
    config '["cpu:1", "gpu:0"]'
    reject 'ranks\[1\]: unknown device "gpu:0"' ;;
  bad_too_many_ranks)
    config "[$(for i in $(seq 0 "$cores"); do printf '%s"cpu:1"' "$([[ $i -gt 0 ]] && echo ,)"; done)]"
    reject "ranks: $((cores + 1)) ranks need $((cores + 1)) cores but this machine \($cores cores\) has fewer; set \"oversubscribe\": true" ;;
  bad_missing_model)
    config '["cpu:1", "cpu:1"]' "$work/no-such-model"
    reject "model: $work/no-such-model is not a directory" ;;
  bad_unknown_field)
    config '["cpu:1", "cpu:1"]' "$tiny" '"polcy": "uniform",'
    reject 'polcy: unknown field' ;;
  bad_json)
    echo '{"model": ' >"$work/run.json"
    reject 'not JSON' ;;
  bad_cuda_without_gpu)
    command -v nvidia-smi >/dev/null && { echo "skipped: this machine has nvidia-smi"; exit 77; }
    config '["cpu:1", "cuda:0"]'
    reject 'ranks: cuda:0 but this machine has 0 GPU\(s\)' ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
