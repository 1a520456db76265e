#!/usr/bin/env bash
# A batch job that is killed and resumed gives the answers of a run that was never interrupted:
# `moe generate` on the default model, NP ranks (1: a single process), 2,000 prompts, rank 0
# killed (SIGKILL) at random points — each after a random share of the answers is written to
# OUT.jsonl.partial — then run again with --resume, until it completes. The final file must hold
# the same ids and output ids, line for line, as the uninterrupted run; a partial file is refused
# without --resume, and one from another input is refused with it.
# Usage: resume.sh BUILD_DIR NP [KILLS [GENERATE ARGUMENTS...]]
#        (RANDOM_SEED, if set, makes the kill points repeatable)
set -uo pipefail
build=$1 np=$2 kills=${3:-3}
shift $(($# < 3 ? $# : 3))
more=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
moe=$build/moe model=$root/configs/models/switch-tiny
work=$(mktemp -d)
trap 'kill -9 $job 2>/dev/null; rm -rf "$work"' EXIT
source "$root/launch/mpirun_flags.sh"
RANDOM=${RANDOM_SEED:-$$}
python3 "$root/launch/experiments/make_prompts.py" --count 2000 --out "$work/in.jsonl" 2>/dev/null
launcher=()
((np > 1)) && launcher=(mpirun "${MPIRUN_FLAGS[@]}" -np "$np")
generate() {  # generate OUTPUT [more arguments]
  local out=$1
  shift
  "${launcher[@]}" "$moe" generate --model "$model" --input "$work/in.jsonl" --output "$out" \
    --max-new-tokens 16 --batch-size 8 --quiet --deadline 30 "${more[@]}" "$@"
}
fail() { echo "FAIL: $*"; exit 1; }

# Rank 0 of this job (the process itself for a single process): only processes reading this
# test's input, as other tests may run theirs beside it.
rank0() {
  local rank=()
  ((np == 1)) || rank=(OMPI_COMM_WORLD_RANK=0)
  "$root/tests/pids_with_env.sh" "${rank[@]}" --cmdline "--input $work/in.jsonl" | head -n 1
}

generate "$work/whole.jsonl" >"$work/whole.log" 2>&1 || { cat "$work/whole.log"; fail "the uninterrupted run"; }
echo "uninterrupted: $(grep '^generated' "$work/whole.log")"

partial=$work/out.jsonl.partial
refusals() {  # with a partial file there: without --resume, and of another input, it is refused
  generate "$work/out.jsonl" >"$work/refused.log" 2>&1 && fail "a run without --resume wrote over the partial file"
  grep -q "out.jsonl.partial: exists: .*--resume" "$work/refused.log" || { cat "$work/refused.log"; fail "no refusal line"; }
  echo "ok: without --resume the partial file is refused: $(grep -o 'out.jsonl.partial: exists.*' "$work/refused.log")"
  head -n 1000 "$work/in.jsonl" | tail -n 999 >"$work/other.jsonl"
  "${launcher[@]}" "$moe" generate --model "$model" --input "$work/other.jsonl" --output "$work/out.jsonl" --resume \
    --quiet --deadline 30 >"$work/other.log" 2>&1 && fail "a partial file of another input was resumed"
  grep -q "out.jsonl.partial:1: answers id .* but the prompt on line 1 of .* has id .*: not a run of this input" \
    "$work/other.log" || { cat "$work/other.log"; fail "no refusal line for another input"; }
  echo "ok: another input's resume is refused"
}
# Each kill aims at a random point in the second quarter of what is left (answers reach the
# partial file in bursts, every 0.5 s or 64 KB); a run too near its end to be killed ends it.
for k in $(seq 1 "$kills"); do
  done_lines=$( [[ -f $partial ]] && wc -l <"$partial" || echo 0)
  left=$((2000 - done_lines))
  target=$((done_lines + left / 4 + RANDOM % (left / 4 + 1)))
  generate "$work/out.jsonl" --resume >"$work/run-$k.log" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do
    [[ -f $partial ]] && (($(wc -l <"$partial") >= target)) && break
    kill -0 $job 2>/dev/null || break
    sleep 0.02
  done
  if ! kill -0 $job 2>/dev/null; then
    wait $job || { cat "$work/run-$k.log"; fail "run $k failed"; }
    ((k > 1)) || fail "the first run ended before it could be killed"
    echo "run $k: completed before its kill point ($target of 2000)"
    break
  fi
  pid=$(rank0)
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null
  wait $job
  if [[ -e $work/out.jsonl && ! -e $partial ]]; then  # it finished before the kill landed
    ((k > 1)) || fail "the first run ended before it could be killed"
    echo "run $k: completed before the kill landed ($target of 2000)"
    break
  fi
  echo "run $k: rank 0 killed after $(wc -l <"$partial") of 2000 answers (aimed at $target); $(grep -c . "$work/run-$k.log") log lines"
  [[ ! -e $work/out.jsonl ]] || fail "run $k left a complete-looking output"
  ((k > 1)) || refusals
done

if [[ -e $partial ]]; then
  generate "$work/out.jsonl" --resume >"$work/last.log" 2>&1 || { cat "$work/last.log"; fail "the last resume"; }
  grep '^resum' "$work/last.log"
fi
[[ ! -e $partial ]] || fail "the partial file is still there"
python3 - "$work/whole.jsonl" "$work/out.jsonl" <<'EOF' || exit 1
import json, sys
whole, resumed = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
key = lambda a: (a["id"], a["output_ids"], a.get("text"))
assert len(whole) == len(resumed) == 2000, (len(whole), len(resumed))
differ = [i for i, (a, b) in enumerate(zip(whole, resumed)) if key(a) != key(b)]
assert not differ, f"{len(differ)} answers differ, first on line {differ[0] + 1}"
print("ok: the resumed job's 2000 answers equal the uninterrupted run's, line for line")
EOF
