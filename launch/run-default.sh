#!/usr/bin/env bash
# The main job: builds if needed, then serves the small trained default model under mpirun with
# one coordinator and two expert ranks, printing each answer, tokens/s and the per-rank table.
# Extra arguments go to `moe generate` (e.g. --trace trace.json).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh build
source launch/mpirun_flags.sh  # root allowed, more ranks than cores
cmd=(mpirun "${MPIRUN_FLAGS[@]}" -np 3 build/moe generate --model configs/models/switch-tiny
  --input configs/models/switch-tiny/prompts.jsonl --max-new-tokens 24 "$@")
echo "+ ${cmd[*]}"
"${cmd[@]}"
