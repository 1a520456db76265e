#!/usr/bin/env bash
# The main job: builds if needed, then serves the small trained default model under mpirun with
# one coordinator and two expert ranks, printing each answer, tokens/s and the per-rank table.
# Extra arguments go to `moe generate` (e.g. --trace trace.json).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh build
flags=(--oversubscribe --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1)
[[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
cmd=(mpirun "${flags[@]}" -np 3 build/moe generate --model configs/models/switch-tiny
  --input configs/models/switch-tiny/prompts.jsonl --max-new-tokens 24 "$@")
echo "+ ${cmd[*]}"
"${cmd[@]}"
