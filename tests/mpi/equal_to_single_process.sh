#!/usr/bin/env bash
# A fixture run under mpirun -np N must equal the single-process run: forward outputs (encoder
# states, logits, router choices) within 1e-5, greedy generations exactly.
# Usage: equal_to_single_process.sh BUILD_DIR FIXTURE_DIR NP [replicas POLICY]
set -euo pipefail
build=$1 fixture=$2 np=$3 replicas=${4:-} policy=${5:-static}
moe=$build/moe tool=$build/tests/fixture_tool
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$0")/mpirun_flags.sh"

"$tool" requests "$fixture" >"$work/in.jsonl"
extra=(--policy "$policy")
if [[ $replicas == replicas ]]; then
  "$tool" replicated-map "$fixture/model" "$np" >"$work/map.json"
  extra+=(--expert-map "$work/map.json")
fi
run() {  # run NP OUT_PREFIX
  local launcher=()
  (($1 > 1)) && launcher=(mpirun "${MPIRUN_FLAGS[@]}" -np "$1")
  echo "+ ${launcher[*]} moe forward ... ${extra[*]}"
  "${launcher[@]}" "$moe" forward --model "$fixture/model" --input "$work/in.jsonl" \
    --output "$2.safetensors" --deadline 60 "${extra[@]}" >"$2.log"
  "${launcher[@]}" "$moe" generate --model "$fixture/model" --input "$work/in.jsonl" \
    --output "$2.jsonl" --max-new-tokens 12 --quiet --deadline 60 "${extra[@]}" >>"$2.log"
}
run 1 "$work/single"
run "$np" "$work/multi"
grep -A20 '^rank' "$work/multi.log" | tail -n +1 | head -8
"$tool" compare "$work/single.safetensors" "$work/multi.safetensors" 1e-5
"$tool" compare "$work/single.jsonl" "$work/multi.jsonl" 0
