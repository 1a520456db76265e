#!/usr/bin/env bash
# Prints, one per line, the pid of every process whose environment (as it was started) holds each
# VAR=VALUE given and, with --cmdline, whose command line contains TEXT; this script and the
# processes it runs under (which may carry the same variables) are left out. The tests find a
# job's ranks (OMPI_COMM_WORLD_RANK) and what a test started (SLURM_CONF, MOE_NODES_ID) this way.
# Usage: tests/pids_with_env.sh [VAR=VALUE...] [--cmdline TEXT]
set -uo pipefail
want=() text=''
while (($#)); do
  case $1 in
    --cmdline) text=$2; shift 2 ;;
    *=*) want+=("$1"); shift ;;
    *) echo "pids_with_env.sh: expected VAR=VALUE or --cmdline TEXT, got '$1'" >&2; exit 2 ;;
  esac
done
# Builtins only (no process per /proc entry): a rank must be found while its job still runs.
skip=" " p=$$
while ((p > 1)); do
  skip+="$p "
  parent=''
  while read -r key value; do
    [[ $key == PPid: ]] && { parent=$value; break; }
  done 2>/dev/null <"/proc/$p/status"
  [[ -n $parent ]] || break
  p=$parent
done
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [[ $skip == *" $p "* ]] && continue
  if [[ -n $text ]]; then
    mapfile -d '' words 2>/dev/null <"$d/cmdline" || continue
    [[ " ${words[*]} " == *"$text"* ]] || continue
  fi
  mapfile -d '' env 2>/dev/null <"$d/environ" || continue
  for w in "${want[@]}"; do
    found=0
    for e in "${env[@]}"; do [[ $e == "$w" ]] && { found=1; break; }; done
    ((found)) || continue 2
  done
  echo "$p"
done
