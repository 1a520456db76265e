#!/usr/bin/env bash
# Placement and latency-aware routing on this machine, measured in one run, with the simulator's
# prediction of every measured row beside it (docs/BENCHMARKS.md, "Placement and routing"; the
# simulator replays each bench-routing run's settings interleaved in its order, --interleave).
#
# Workload: routing traces of the trained switch-tiny model (48 prompts of its three tasks) and a
# synthetic balanced trace, replayed with switch-base-8-wide experts (d_model 768, d_ff 3072;
# make_wide_model.py) on one coordinator and two expert ranks:
#   homo          cpu:1, cpu:1                      trained-model trace (skewed expert load)
#   homo-balanced cpu:1, cpu:1                      synthetic trace, uniform expert popularity
#   hetero        cpu:1, cpu:1 under a 0.4-core cgroup CPU quota (the kernel slows it, no sleep)
# Routing settings hold every expert on both expert ranks (the two-unlike-devices study, where
# routing alone balances the load); placement compares `moe place` (the table model, and refined by
# simulation with --cluster) with round-robin, random and fastest-class maps on hetero, placed from
# the trace and measured on a held-out one. Then live generation per policy on hetero.
# Usage: routing_eval.sh [--work DIR] [--moe BIN] [--repeats N] [--settings homo,homo-balanced,hetero]
#                        [--hetero-devices cpu:1,cpu:1,cpu:1@0.4] [--mpirun LAUNCHER]  (~7 minutes on 2 cores)
# --hetero-devices: the hetero setting's devices, e.g. cpu:1,cuda:0,cpu:4 for a GPU rank beside a
# CPU rank; --mpirun: what starts the ranks, given mpirun's arguments (default mpirun; e.g.
# tests/multinode/mpirun.sh, rank 2 on another node); --settings: the routing settings to run
# (placement and live generation run on hetero, wherever it is named). The table is printed and
# written to DIR/table.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
W=/tmp/moe-routing-eval
moe=$root/build/moe
repeats=3
settings=homo,homo-balanced,hetero
hetero_devices=cpu:1,cpu:1,cpu:1@0.4
launcher=mpirun
while (($#)); do
  case $1 in
    --work) W=$2; shift 2 ;;
    --moe) moe=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --hetero-devices) hetero_devices=$2; shift 2 ;;
    --mpirun) launcher=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "routing_eval.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for s in ${settings//,/ }; do
  [[ $s == homo || $s == homo-balanced || $s == hetero ]] ||
    { echo "routing_eval.sh: --settings: unknown setting $s (homo, homo-balanced, hetero)" >&2; exit 2; }
done
SETTINGS=${settings//,/ }
has_setting() { [[ ,$settings, == *,$1,* ]]; }
# The profiles the settings need: homo-balanced runs on the homo devices.
PROFILED=
if has_setting homo || has_setting homo-balanced; then PROFILED=homo; fi
if has_setting hetero; then PROFILED="${PROFILED:+$PROFILED }hetero"; fi
tool=$root/launch/experiments/maps_and_compare.py
mkdir -p "$W"
source "$root/launch/mpirun_flags.sh"
run() { echo "+ $*" >&2; "$@"; }
mpi() { run "$launcher" "${MPIRUN_FLAGS[@]}" -np 3 "$moe" "$@"; }
table() { grep -v '^done\|^rank\|^[0-9] \|^total\|^checkpoint'; }
devices_of() { [[ $1 == hetero ]] && echo "$hetero_devices" || echo cpu:1,cpu:1,cpu:1; }
profile_of() { [[ $1 == hetero ]] && echo "$W/hetero-profile.json" || echo "$W/homo-profile.json"; }
trace_of() { [[ $1 == homo-balanced ]] && echo "$W/balanced.jsonl" || echo "$W/trace.jsonl"; }
BASELINES=static,random,round-robin,uniform
ALL=$BASELINES,latency-aware
echo "# $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "commit unknown"), settings $settings, hetero devices $hetero_devices, launcher $launcher"

# make_wide_model.py writes the checkpoint with numpy and safetensors: install them where missing.
python3 -c 'import numpy, safetensors' 2>/dev/null || run python3 -m pip install --quiet numpy safetensors
[[ -f $W/wide/model.safetensors ]] || run python3 "$root/launch/experiments/make_wide_model.py" --out "$W/wide"
M=$root/configs/models/switch-tiny
run python3 "$root/launch/experiments/make_prompts.py" --count 48 --out "$W/prompts.jsonl"
run "$moe" generate --model "$M" --input "$W/prompts.jsonl" --quiet --record-routing "$W/trace.jsonl" >/dev/null
run python3 "$tool" replicated-map "$W/wide" 3 >"$W/full.json"

echo "== profiles (each expert rank alone, all its experts timed in rotation), with probe latency samples"
echo "   (the first also measures the contention of both ranks computing at once, paired with each alone)"
PROFILE=(--token-counts 1-32,48,64,96,128 --repeats 3 --expert-map "$W/full.json")
for s in $PROFILED; do
  # Contention is measured once, on the homo devices, or on the hetero ones where they run alone
  # (not under a CPU quota, whose stalls the paired timings would count as contention).
  contention=()
  if [[ $s == homo || ( $PROFILED == hetero && $hetero_devices != *@* ) ]]; then
    contention=(--contention 2)
    contended=$(profile_of $s)
  fi
  mpi profile --model "$W/wide" --devices "$(devices_of $s)" --out "$(profile_of $s)" "${PROFILE[@]}" \
    "${contention[@]}" --record-latency-samples "$W/samples-probe-$s.csv" | sed -n '/^rank  device/,/^profile written/p; /^contention/p'
done
# The simulator's view of this machine: its cluster config with the core count, poll and copy
# constants and the contention of ranks computing at once, measured here.
cp "$root/configs/clusters/this-machine-np3.json" "$W/cluster.json"
contention=(); [[ -n ${contended:-} ]] && contention=(--contention-from "$contended")
run python3 "$root/launch/simulator/measure_host.py" --patch "$W/cluster.json" --cores "$(nproc)" "${contention[@]}"
run "$moe" simulate --cluster "$W/cluster.json" --profile "$W/${PROFILED%% *}-profile.json" \
  --synthetic balanced --batches 24 --tokens-per-call 64 --sequences 8 --policy static --placement round-robin \
  --write-trace "$W/balanced.jsonl" >/dev/null

echo "== latency samples from the baseline policies in every setting, then the predictor"
samples=()
for s in $PROFILED; do samples+=("$W/samples-probe-$s.csv"); done
for s in $SETTINGS; do
  mpi bench-routing --model "$W/wide" --devices "$(devices_of $s)" --routing-trace "$(trace_of $s)" \
    --expert-maps "$W/full.json" --policies $BASELINES --profile "$(profile_of $s)" \
    --record-latency-samples "$W/samples-$s.csv" --repeats 2 >/dev/null 2>&1
  samples+=("$W/samples-$s.csv")
done
run "$moe" train-latency-model --samples "$(IFS=,; echo "${samples[*]}")" --out "$W/latency-baselines.bin" --epochs 300
echo "== one round on latency-aware's own decisions, then the predictor again on every sample"
for s in $SETTINGS; do
  mpi bench-routing --model "$W/wide" --devices "$(devices_of $s)" --routing-trace "$(trace_of $s)" \
    --expert-maps "$W/full.json" --policies latency-aware --profile "$(profile_of $s)" \
    --latency-model "$W/latency-baselines.bin" --record-latency-samples "$W/samples-$s-own.csv" \
    --repeats 2 >/dev/null 2>&1
  samples+=("$W/samples-$s-own.csv")
done
run "$moe" train-latency-model --samples "$(IFS=,; echo "${samples[*]}")" --out "$W/latency.bin" --epochs 300

for s in $SETTINGS; do
  echo "== routing, $s, every expert on both expert ranks: measured, then simulated"
  mpi bench-routing --model "$W/wide" --devices "$(devices_of $s)" --routing-trace "$(trace_of $s)" \
    --expert-maps "$W/full.json" --policies $ALL --profile "$(profile_of $s)" --latency-model "$W/latency.bin" \
    --repeats "$repeats" --csv "$W/routing-$s.csv" --per-call "$W/routing-$s-calls.csv" 2>&1 | table
  run "$moe" simulate --cluster "$W/cluster.json" --profile "$(profile_of $s)" --trace "$(trace_of $s)" \
    --placement "$W/full.json" --policy $ALL --latency-model "$W/latency.bin" --warmup 1 --passes "$repeats" \
    --interleave --out "$W/simulated-$s.csv" >/dev/null
done

if has_setting hetero; then
  echo "== placement, hetero: placed from the trace, measured and simulated on a held-out one (48 other prompts)"
  run python3 "$root/launch/experiments/make_prompts.py" --count 48 --seed 2027 --out "$W/prompts-heldout.jsonl"
  run "$moe" generate --model "$M" --input "$W/prompts-heldout.jsonl" --quiet --record-routing "$W/trace-heldout.jsonl" >/dev/null
  # The table model (profiled medians) and the same refined by simulating this machine's cluster.
  run "$moe" place --profile "$W/hetero-profile.json" --trace "$W/trace.jsonl" --out "$W/placed.json" --replicas 2 \
    --baselines "$W/base"
  run "$moe" place --profile "$W/hetero-profile.json" --trace "$W/trace.jsonl" --out "$W/placed-sim.json" --replicas 2 \
    --cluster "$W/cluster.json" | grep -v '^map\|^placed\|^round-robin\|^random\|^fastest'
  MAPS=$W/placed.json,$W/placed-sim.json,$W/base-round-robin.json,$W/base-random.json,$W/base-fastest.json
  mpi bench-routing --model "$W/wide" --devices "$(devices_of hetero)" --routing-trace "$W/trace-heldout.jsonl" \
    --expert-maps "$MAPS" --policies uniform,latency-aware --profile "$W/hetero-profile.json" \
    --latency-model "$W/latency.bin" --repeats "$repeats" --csv "$W/placement-hetero.csv" \
    --per-call "$W/placement-hetero-calls.csv" 2>&1 | table
  run "$moe" simulate --cluster "$W/cluster.json" --profile "$W/hetero-profile.json" --trace "$W/trace-heldout.jsonl" \
    --placement "$MAPS" --policy uniform,latency-aware --latency-model "$W/latency.bin" --warmup 1 \
    --passes "$repeats" --interleave --out "$W/simulated-placement-hetero.csv" >/dev/null

  echo "== live generation, hetero, every expert on both expert ranks (48 prompts of token ids, batch 8)"
  # The wide model has no tokenizer and random routers: prompts are token ids.
  for i in $(seq 1 48); do
    echo "{\"id\": $i, \"input_ids\": [$(( (i * 7) % 70 + 3 )), $(( (i * 13) % 70 + 3 )), $(( (i * 29) % 70 + 3 )), 5, 6, 1]}"
  done >"$W/live.jsonl"
  for policy in ${ALL//,/ }; do
    printf '%-14s ' "$policy"
    mpi generate --model "$W/wide" --devices "$(devices_of hetero)" --expert-map "$W/full.json" --policy "$policy" \
      --profile "$W/hetero-profile.json" --latency-model "$W/latency.bin" --input "$W/live.jsonl" \
      --max-new-tokens 8 --quiet --output "$W/live-$policy.jsonl" 2>/dev/null | grep '^generated'
  done
  for policy in random round-robin uniform latency-aware; do
    python3 "$tool" compare "$W/live-static.jsonl" "$W/live-$policy.jsonl" | sed "s/^/$policy vs static: /"
  done
fi

echo "== the table (docs/BENCHMARKS.md)"
run python3 "$root/launch/experiments/routing_table.py" --work "$W" | tee "$W/table.md"
