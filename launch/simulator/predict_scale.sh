#!/usr/bin/env bash
# Predictions at 8, 64 and 512 GPUs (docs/SIMULATOR.md, "Predictions"): for each mixed cluster of
# configs/clusters/gpu-*-mixed.json, synthetic switch-base-shaped traces (12 sparse layers, 4096
# tokens per call as 32 sequences of 128; balanced and Zipf-1.2 skewed expert popularity) through
# round-robin, replicated and GPU-aware placements under every baseline policy; the simulated
# calls' latency samples (at most ~200k, evenly spaced) train the MLP latency model (moe
# train-latency-model), latency-aware runs once with it to add samples of its own decisions, the
# model is trained again on all of them, and latency-aware runs on the same workloads. Tables on stdout, CSVs in WORK_DIR.
# Usage: predict_scale.sh [--work DIR] [--moe BIN] [--sizes "8 64 512"]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
W=/tmp/moe-sim-scale
moe=$root/build/moe
sizes="8 64 512"
while (($#)); do
  case $1 in
    --work) W=$2; shift 2 ;;
    --moe) moe=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "predict_scale.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$W"
run() { echo "+ $*" >&2; "$@"; }
profile=$root/configs/clusters/profiles/h100-switch-base-8-bf16.json
for n in $sizes; do
  case $n in
    8) experts=8; batches=16; placed=placed:4 ;;
    64) experts=64; batches=32; placed=placed:32 ;;
    512) experts=256; batches=128; placed=placed:128 ;;
    *) echo "predict_scale.sh: no workload for $n GPUs" >&2; exit 2 ;;
  esac
  cluster=$root/configs/clusters/gpu-$n-mixed.json
  common=(--cluster "$cluster" --profile "$profile" --layers 12 --experts $experts --batches $batches
          --tokens-per-call 4096 --sequences 32 --placement round-robin,replicated:2,$placed)
  rm -f "$W/samples-$n.csv"
  for pop in balanced skewed; do
    run "$moe" simulate "${common[@]}" --synthetic $pop --policy static,random,round-robin,uniform \
      --record-latency-samples "$W/samples-$n-$pop.csv" --out "$W/baselines-$n-$pop.csv" >/dev/null
  done
  # One sample per expert rank and call: at 512 GPUs millions; 200k evenly spaced ones train it.
  for pop in balanced skewed; do
    f=$W/samples-$n-$pop.csv
    lines=$(wc -l <"$f")
    awk -v every=$(( lines / 100000 + 1 )) 'NR == 1 || NR % every == 0' "$f" >"$f.sub" && mv "$f.sub" "$f"
  done
  run "$moe" train-latency-model --samples "$W/samples-$n-balanced.csv,$W/samples-$n-skewed.csv" \
    --out "$W/latency-$n-baselines.bin" >&2
  # One round on the policy's own decisions: a model fitted only to what the baselines did is
  # wrong exactly where latency-aware goes (it picks the assignments the model under-predicts).
  for pop in balanced skewed; do
    f=$W/samples-$n-$pop-own.csv
    run "$moe" simulate "${common[@]}" --synthetic $pop --policy latency-aware \
      --latency-model "$W/latency-$n-baselines.bin" --record-latency-samples "$f" >/dev/null
    lines=$(wc -l <"$f")
    awk -v every=$(( lines / 100000 + 1 )) 'NR == 1 || NR % every == 0' "$f" >"$f.sub" && mv "$f.sub" "$f"
  done
  run "$moe" train-latency-model --out "$W/latency-$n.bin" \
    --samples "$W/samples-$n-balanced.csv,$W/samples-$n-skewed.csv,$W/samples-$n-balanced-own.csv,$W/samples-$n-skewed-own.csv" >&2
  for pop in balanced skewed; do
    echo "## $n GPUs, $pop"
    run "$moe" simulate "${common[@]}" --synthetic $pop --policy static,random,round-robin,uniform,latency-aware \
      --latency-model "$W/latency-$n.bin" --out "$W/all-$n-$pop.csv"
  done
done
