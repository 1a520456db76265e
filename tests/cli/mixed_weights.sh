#!/usr/bin/env bash
# A run plan that mixes weight formats per rank: rank 0 (attention) int8, expert rank 1 bf16,
# expert rank 2 float32, on the trained default model. Its answers to 300 prompts must equal the
# all-float32 single process's, and the rank table must name each rank's format.
# Usage: mixed_weights.sh BUILD_DIR
set -euo pipefail
build=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
moe=$build/moe model=$root/configs/models/switch-tiny
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/launch/mpirun_flags.sh"
python3 "$root/launch/experiments/make_prompts.py" --count 300 --out "$work/in.jsonl" 2>/dev/null
common=(--model "$model" --input "$work/in.jsonl" --max-new-tokens 20 --batch-size 8 --deadline 30)
echo "+ moe generate (float32, one process)"
"$moe" generate "${common[@]}" --output "$work/f32.jsonl" --quiet
echo "+ mpirun -np 3 moe generate --devices cpu:1:int8,cpu:1:bf16,cpu:1"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate "${common[@]}" --output "$work/mixed.jsonl" \
  --devices cpu:1:int8,cpu:1:bf16,cpu:1 | tee "$work/log" | grep -E '^(rank|[0-9] )'
for format in cpu:1:int8 cpu:1:bf16; do
  grep -q " $format " "$work/log" || { echo "FAIL: the rank table names no $format rank"; exit 1; }
done
texts() { python3 -c 'import json,sys; [print(json.loads(l)["id"], json.loads(l)["text"]) for l in open(sys.argv[1])]' "$1"; }
if ! diff <(texts "$work/f32.jsonl") <(texts "$work/mixed.jsonl") >"$work/diff"; then
  echo "FAIL: $(grep -c '^<' "$work/diff") of 300 answers differ from float32:"
  head -6 "$work/diff"
  exit 1
fi
echo "PASS: 300 answers equal float32's with int8, bf16 and float32 ranks"
