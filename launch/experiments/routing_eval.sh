#!/usr/bin/env bash
# Placement and routing evaluation on this machine (docs/ROUTING.md): a routing trace from the
# trained switch-tiny model replayed with switch-base-8-wide experts on one coordinator and two
# expert ranks — homogeneous (cpu:1, cpu:1) and heterogeneous (cpu:1, cpu:1 under a 0.4-core
# cgroup quota). Usage: routing_eval.sh [WORK_DIR] (default /tmp/moe-routing-eval). ~5 minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/moe-routing-eval}
mkdir -p "$W"
source "$root/tests/mpi/mpirun_flags.sh"
moe=$root/build/moe
run() { echo "+ $*" >&2; "$@"; }
mpi() { run mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" "$@"; }
table() { grep -v '^done\|^rank\|^[0-9] \|^total'; }
HOMO=cpu:1,cpu:1,cpu:1
HETERO=cpu:1,cpu:1,cpu:1@0.4

[[ -f $W/wide/model.safetensors ]] || run python3 "$root/launch/experiments/make_wide_model.py" --out "$W/wide"
M=$root/configs/models/switch-tiny
for i in 1 2; do cat "$M/prompts.jsonl"; done >"$W/prompts.jsonl"
run "$moe" generate --model "$M" --input "$W/prompts.jsonl" --quiet --record-routing "$W/trace.jsonl" >/dev/null
run "$root/build/tests/fixture_tool" replicated-map "$W/wide" 3 >"$W/full.json"

echo "== profiles"
mpi profile --model "$W/wide" --devices $HOMO --out "$W/homo-profile.json" --token-counts 1,2,4,8,16,32,64 | sed -n '1,3p'
mpi profile --model "$W/wide" --devices $HETERO --out "$W/hetero-profile.json" --token-counts 1,2,4,8,16,32,64 | sed -n '1,3p'

echo "== latency samples from the baseline policies on both settings, then the predictor"
mpi bench-routing --model "$W/wide" --devices $HOMO --routing-trace "$W/trace.jsonl" --expert-maps "$W/full.json" \
  --policies static,random,uniform,round-robin --profile "$W/homo-profile.json" --record-latency-samples "$W/homo.csv" --repeats 3 >/dev/null 2>&1
mpi bench-routing --model "$W/wide" --devices $HETERO --routing-trace "$W/trace.jsonl" --expert-maps "$W/full.json" \
  --policies static,random,uniform,round-robin --profile "$W/hetero-profile.json" --record-latency-samples "$W/hetero.csv" --repeats 3 >/dev/null 2>&1
run "$moe" train-latency-model --samples "$W/homo.csv,$W/hetero.csv" --out "$W/latency.bin" --epochs 300

for setting in homo hetero; do
  devices=$HOMO; [[ $setting == hetero ]] && devices=$HETERO
  echo "== routing, $setting ranks, every expert on both expert ranks"
  mpi bench-routing --model "$W/wide" --devices $devices --routing-trace "$W/trace.jsonl" --expert-maps "$W/full.json" \
    --policies random,uniform,round-robin,latency-aware --profile "$W/$setting-profile.json" \
    --latency-model "$W/latency.bin" --repeats 3 --csv "$W/routing-$setting.csv" 2>&1 | table
done

echo "== placement, heterogeneous ranks"
run "$moe" place --profile "$W/hetero-profile.json" --trace "$W/trace.jsonl" --out "$W/placed.json" --replicas 2 --baselines "$W/base"
mpi bench-routing --model "$W/wide" --devices $HETERO --routing-trace "$W/trace.jsonl" \
  --expert-maps "$W/placed.json,$W/base-round-robin.json,$W/base-random.json,$W/base-fastest.json" \
  --policies uniform --repeats 3 --csv "$W/placement-hetero.csv" 2>&1 | table

echo "== live generation, hetero ranks, every expert on both expert ranks (tokens/s from the run)"
# 16 prompts of token ids (the wide model has no tokenizer; its routers are random).
for i in $(seq 1 16); do echo "{\"id\": $i, \"input_ids\": [$(( (i * 7) % 70 + 3 )), $(( (i * 13) % 70 + 3 )), $(( (i * 29) % 70 + 3 )), 5, 6, 1]}"; done >"$W/live.jsonl"
for policy in random uniform round-robin latency-aware; do
  printf '%-14s ' "$policy"
  mpi generate --model "$W/wide" --devices $HETERO --expert-map "$W/full.json" --policy $policy \
    --profile "$W/hetero-profile.json" --latency-model "$W/latency.bin" --input "$W/live.jsonl" \
    --max-new-tokens 8 --quiet 2>/dev/null | grep '^generated'
done
