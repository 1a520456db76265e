#!/usr/bin/env bash
# The default model's answers to its example prompts, from the C++ runtime (alone and under
# mpirun -np 3), equal Hugging Face's greedy generate (switch_tiny_hf_outputs.jsonl, recorded
# with transformers 5.23 by the training script's evaluation).
set -euo pipefail
build=$1 root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/launch/mpirun_flags.sh"
args=(generate --model "$root/configs/models/switch-tiny" --input "$root/configs/models/switch-tiny/prompts.jsonl" --max-new-tokens 24 --quiet)
"$build/moe" "${args[@]}" --output "$work/one.jsonl"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" "${args[@]}" --output "$work/three.jsonl" >/dev/null
"$build/tests/fixture_tool" compare "$root/tests/reference/switch_tiny_hf_outputs.jsonl" "$work/one.jsonl" 0
"$build/tests/fixture_tool" compare "$root/tests/reference/switch_tiny_hf_outputs.jsonl" "$work/three.jsonl" 0
