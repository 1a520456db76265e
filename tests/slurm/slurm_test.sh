#!/usr/bin/env bash
# launch/slurm against a real SLURM controller: installs Debian's slurm-wlm and munge when they
# are missing, starts munged, slurmctld and slurmd for this one node from a generated slurm.conf
# (all state, sockets, ports and logs in a temporary folder), then
#   1. submits configs/runs/default.json with launch/slurm/submit (mpirun inside the allocation)
#      and checks the job's answers equal a direct mpirun run of the same workload (same ids),
#      its log holds the same per-rank table, and a trace was written for the job id;
#   2. the same with the ranks started by `srun --mpi=pmix`;
#   3. submits a config whose expert map places an expert on a rank that does not exist: the job
#      must end FAILED, with the rank's one-line error in the job log;
#   4. a long job (20,000 prompts) killed by scancel --signal=KILL part-way, then resubmitted with
#      --resume: its answers equal an uninterrupted direct run's.
# The daemons (and anything they started) are stopped on every exit; none is left running.
# Usage: slurm_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
start=$SECONDS
step() { echo "[$((SECONDS - start))s] $*"; }
source "$root/tests/slurm/cluster.sh"
host=$(hostname -s)
NODES=("$host") ADDRESSES=(127.0.0.1)
on_node() { shift; "$@"; }  # one node: this host

cluster_install
trap 'cluster_stop $?; exit $?' EXIT
trap 'exit 130' INT TERM
cluster_start

# --- jobs --------------------------------------------------------------------------------------
run_direct

expect_equal_to_direct() {
  ((job_status == 0)) || { echo "FAIL: job $job did not complete"; exit 1; }
  "$build/tests/fixture_tool" compare "$work/direct.jsonl" "$work/out/moe-$job.jsonl" 0
  diff <(grep '^\[' "$work/direct.out") <(grep '^\[' "$work/out/moe-$job.log")
  diff <(grep '^rank' "$work/direct.out") <(grep '^rank' "$work/out/moe-$job.log")
  [[ $(grep -cE '^[0-9]+ ' "$work/out/moe-$job.log") -eq 3 ]] || { echo "FAIL: not 3 rows in the table"; exit 1; }
  grep -q '"traceEvents"' "$work/out/moe-$job.trace.json" || { echo "FAIL: no trace for job $job"; exit 1; }
  step "ok: job $job's answers equal the direct mpirun run; table and trace written"
}

step "1. default run config, mpirun inside the allocation"
submit "$root/configs/runs/default.json"
grep -q "coordinator on $host" "$work/out/moe-$job.log"
grep -q '^+ mpirun ' "$work/out/moe-$job.log"
expect_equal_to_direct

step "2. the same with srun --mpi=pmix"
submit "$root/configs/runs/default.json" --launcher srun
grep -q '^+ srun --mpi=pmix ' "$work/out/moe-$job.log"
expect_equal_to_direct

step "3. a rank that fails: the expert map places layer 0's expert 0 on rank 7 of 3"
python3 - "$work" "$root" <<'PY'
import json, sys
work, root = sys.argv[1:]
layers = [{"layer": l, "experts": [[7 if (l, e) == (0, 0) else 1 + e % 2] for e in range(8)]} for l in range(4)]
json.dump({"layers": layers}, open(f"{work}/bad-map.json", "w"))
cfg = json.load(open(f"{root}/configs/runs/default.json"))
cfg["expert_map"] = f"{work}/bad-map.json"
json.dump(cfg, open(f"{work}/bad-map-run.json", "w"))
PY
submit "$work/bad-map-run.json"
((job_status != 0)) || { echo "FAIL: the job with a bad expert map succeeded"; exit 1; }
slurm scontrol show job "$job" | grep -q 'JobState=FAILED' || { echo "FAIL: job $job is not FAILED"; exit 1; }
grep -E "^moe generate: error: rank 0 \(host [^)]+\): $work/bad-map.json: layer 0 expert 0 is placed on rank 7, but the expert ranks are 1..2" \
  "$work/out/moe-$job.log" || { echo "FAIL: the rank's error is not in the job log"; exit 1; }
[[ ! -e $work/out/moe-$job.jsonl ]] || { echo "FAIL: the failed job left an answers file"; exit 1; }
step "ok: job $job FAILED with the rank's message in its log"

step "4. a long job killed part-way (scancel --signal=KILL), then resumed"
python3 "$root/launch/experiments/make_prompts.py" --count 20000 --out "$work/long.jsonl" 2>/dev/null
python3 - "$root/configs/runs/default.json" "$work/long-run.json" "$root" "$work/long.jsonl" <<'PY'
import json, os, sys
source, target, root, prompts = sys.argv[1:]
cfg = json.load(open(source))
cfg["model"] = os.path.join(root, cfg["model"])
cfg["workload"].update(input=prompts, max_new_tokens=16)
json.dump(cfg, open(target, "w"))
PY
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" generate --model "$root/configs/models/switch-tiny" \
  --input "$work/long.jsonl" --batch-size 8 --max-new-tokens 16 --quiet --output "$work/long-direct.jsonl" >/dev/null
answers=$work/out/long.jsonl
slurm "$root/launch/slurm/submit" "$work/long-run.json" --moe "$build/moe" --out-dir "$work/out" --output "$answers" \
  | tee "$work/submitted"
job=$(grep -oE 'Submitted batch job [0-9]+' "$work/submitted" | grep -oE '[0-9]+$')
for i in $(seq 1 600); do
  [[ -f $answers.partial ]] && (($(wc -l <"$answers.partial") >= 2000)) && break
  ((i < 600)) || { echo "FAIL: job $job wrote no 2000 answers in 60 s"; cat "$work/out/moe-$job.log"; exit 1; }
  sleep 0.1
done
slurm scancel --signal=KILL --full "$job"
for _ in $(seq 1 300); do
  state=$(slurm scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2)
  [[ $state =~ ^(RUNNING|COMPLETING|PENDING)$ ]] || break
  sleep 0.1
done
[[ $state == CANCELLED && -f $answers.partial && ! -e $answers ]] ||
  { echo "FAIL: job $job: state $state, partial $(ls "$answers"* 2>/dev/null)"; exit 1; }
step "job $job killed ($state) with $(wc -l <"$answers.partial") of 20000 answers in $answers.partial"
submit "$work/long-run.json" --output "$answers" --resume >"$work/resumed.out"  # 20,000 answers
grep -E '^(\+ |job |\[[0-9]+s\]|resum|generated)' "$work/resumed.out"
grep -q "^resuming $answers.partial: [0-9]* of 20000 prompts answered before" "$work/out/moe-$job.log" ||
  { echo "FAIL: job $job did not resume"; exit 1; }
((job_status == 0)) || { echo "FAIL: the resumed job $job did not complete"; exit 1; }
"$build/tests/fixture_tool" compare "$work/long-direct.jsonl" "$answers" 0
step "ok: the killed and resumed job's answers equal the uninterrupted run's"
