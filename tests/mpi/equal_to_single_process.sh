#!/usr/bin/env bash
# A fixture run under mpirun -np N must equal the single-process run: forward outputs (encoder
# states, logits, router choices) within 1e-5 of each tensor's largest magnitude, greedy
# generations exactly. Routing that splits an expert across replicas runs its rows in smaller
# groups, which the CPU device computes by another kernel path (sgemv for one or two rows, sgemm
# with its tails), so float outputs move by rounding: 8e-7 of the magnitude at most over these
# fixtures and policies (latency-aware, whose splits follow measured timings, 6e-7).
# Usage: equal_to_single_process.sh BUILD_DIR FIXTURE_DIR NP [replicas POLICY]
# MOE_DEVICES gives the distributed run's devices (e.g. cpu:1,cuda:0,cpu:1: a GPU expert rank beside
# a CPU one) and MOE_TOLERANCE its float tolerance (default 1e-5; a GPU's float32 GEMMs round
# differently from OpenBLAS's, docs/CUDA.md).
# latency-aware first profiles the ranks (with probe latency samples and, from 3 ranks, the
# contention measurement) and trains its model.
set -euo pipefail
build=$1 fixture=$2 np=$3 replicas=${4:-} policy=${5:-static}
moe=$build/moe tool=$build/tests/fixture_tool
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$0")/../../launch/mpirun_flags.sh"
mpirun=${MOE_MPIRUN:-mpirun}  # tests/multinode/mpirun.sh runs the same across two hosts

"$tool" requests "$fixture" >"$work/in.jsonl"
extra=()
if [[ $replicas == replicas ]]; then
  "$tool" replicated-map "$fixture/model" "$np" >"$work/map.json"
  extra+=(--expert-map "$work/map.json")
fi
devices=()
[[ -n ${MOE_DEVICES:-} ]] && devices=(--devices "$MOE_DEVICES")
weights=()  # MOE_WEIGHTS=bf16|int8: both runs store their weights so
[[ -n ${MOE_WEIGHTS:-} ]] && weights=(--weights "$MOE_WEIGHTS")
distributed=(--policy "$policy" "${devices[@]}")
if [[ $policy == latency-aware ]]; then
  echo "+ mpirun -np $np moe profile ... --record-latency-samples; moe train-latency-model"
  "$mpirun" "${MPIRUN_FLAGS[@]}" -np "$np" "$moe" profile --model "$fixture/model" "${extra[@]}" --deadline 60 \
    "${devices[@]}" --out "$work/profile.json" --token-counts 1,2,4,8 --repeats 2 --max-experts 2 \
    --record-latency-samples "$work/samples.csv" $( ((np >= 3)) && echo --contention 2) >"$work/profile.log"
  if ((np >= 3)); then
    grep -q '"ranks_at_once": 2' "$work/profile.json" || { echo "profile.json has no contention"; exit 1; }
  fi
  "$moe" train-latency-model --samples "$work/samples.csv" --out "$work/latency.bin" --epochs 30 >>"$work/profile.log"
  distributed+=(--profile "$work/profile.json" --latency-model "$work/latency.bin")
fi
run() {  # run NP OUT_PREFIX
  local launcher=() flags=("${extra[@]}" "${weights[@]}")
  if (($1 > 1)); then
    launcher=("$mpirun" "${MPIRUN_FLAGS[@]}" -np "$1")
    flags+=("${distributed[@]}")
  fi
  echo "+ ${launcher[*]} moe forward ... ${flags[*]}"
  "${launcher[@]}" "$moe" forward --model "$fixture/model" --input "$work/in.jsonl" \
    --output "$2.safetensors" --deadline 60 "${flags[@]}" >"$2.log"
  "${launcher[@]}" "$moe" generate --model "$fixture/model" --input "$work/in.jsonl" \
    --output "$2.jsonl" --max-new-tokens 12 --quiet --deadline 60 "${flags[@]}" >>"$2.log"
}
run 1 "$work/single"
run "$np" "$work/multi"
grep -A20 '^rank' "$work/multi.log" | tail -n +1 | head -8
"$tool" compare "$work/single.safetensors" "$work/multi.safetensors" "${MOE_TOLERANCE:-1e-5}"
"$tool" compare "$work/single.jsonl" "$work/multi.jsonl" 0
