#!/usr/bin/env bash
# Measures real runs on this machine and compares the simulator's predictions with them: for each
# setting (number of ranks, devices) it profiles the ranks (moe profile), replays a routing trace
# through every policy and expert map on the real ranks (moe bench-routing) and in the simulator
# (moe simulate, same maps, policies and passes), and runs live generation with a timeline (moe
# generate --trace --record-routing) whose per-call layer latency is compared with the simulation
# of that same run's routing. Prints Markdown table rows (docs/SIMULATOR.md, "Validation").
# Usage: validate.sh [--work DIR] [--moe BIN] [--settings LIST]
#   LIST: comma-separated NAME=DEVICES, DEVICES being the --devices of every rank joined by '+',
#   default "np3=cpu:1+cpu:1+cpu:1,np5=cpu:1+cpu:1+cpu:1+cpu:1+cpu:1". The cluster config used is
#   configs/clusters/this-machine-npN.json with "cores" set to this machine's core count and the
#   poll, copy and contention constants re-measured here (measure_host.py; contention from moe
#   profile --contention). PROFILE_ARGS: more options for moe profile (e.g. "--max-experts 16").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
W=/tmp/moe-sim-validate
moe=$root/build/moe
settings="np3=cpu:1+cpu:1+cpu:1,np5=cpu:1+cpu:1+cpu:1+cpu:1+cpu:1"
while (($#)); do
  case $1 in
    --work) W=$2; shift 2 ;;
    --moe) moe=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "validate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$W"
source "$root/launch/mpirun_flags.sh"
run() { echo "+ $*" >&2; "$@"; }
M=$root/configs/models/switch-tiny
compare=$root/launch/simulator/compare.py
policies=static,random,round-robin,uniform

# A switch-base-8-wide checkpoint with switch-tiny's layout (launch/experiments/make_wide_model.py);
# the routing trace comes from the trained switch-tiny model.
if [[ ! -f $W/wide/model.safetensors ]]; then
  python3 -c "import numpy, safetensors" 2>/dev/null ||
    { echo "validate.sh: make_wide_model.py needs numpy and safetensors: pip install numpy safetensors" >&2; exit 1; }
  run python3 "$root/launch/experiments/make_wide_model.py" --out "$W/wide" >&2
fi
[[ -f $W/wide/spiece.model ]] || cp "$M/spiece.model" "$W/wide/"  # same vocabulary as switch-tiny
for i in 1 2; do cat "$M/prompts.jsonl"; done >"$W/prompts.jsonl"
[[ -f $W/trace.jsonl ]] || run "$moe" generate --model "$M" --input "$W/prompts.jsonl" --quiet \
  --record-routing "$W/trace.jsonl" >/dev/null
echo "| setting | workload | expert map | policy | calls | measured mean µs | predicted mean µs | error | measured p99 µs | predicted p99 µs | error |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
IFS=, read -ra list <<<"$settings"
for s in "${list[@]}"; do
  name=${s%%=*}
  devices=${s#*=}
  devices=${devices//+/,}
  np=$(awk -F, '{print NF}' <<<"$devices")
  S=$W/$name
  mkdir -p "$S"
  mpi() { run mpirun "${MPIRUN_FLAGS[@]}" -np "$np" "$moe" "$@" --devices "$devices"; }
  echo "# $name: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), devices $devices" >&2
  python3 - "$S" "$np" <<'PY'
import json, sys
d, np = sys.argv[1], int(sys.argv[2])
ranks = list(range(1, np))
layers = lambda f: {"layers": [{"layer": l, "experts": [f(l, e) for e in range(8)]} for l in range(4)]}
json.dump(layers(lambda l, e: [ranks[(l * 8 + e) % len(ranks)]]), open(f"{d}/round-robin.json", "w"))
json.dump(layers(lambda l, e: ranks), open(f"{d}/full.json", "w"))
PY
  # Each rank alone; then, paired, as many at once as the host's cores run together: the contention.
  together=$(( np - 1 < $(nproc) ? np - 1 : $(nproc) ))
  mpi profile --model "$W/wide" --expert-map "$S/full.json" --token-counts 1-32,48,64,96,128 --repeats 3 \
    --contention "$together" --out "$S/profile.json" ${PROFILE_ARGS:-} >&2
  cp "$root/configs/clusters/this-machine-np$np.json" "$S/cluster.json"
  run python3 "$root/launch/simulator/measure_host.py" --patch "$S/cluster.json" --cores "$(nproc)" \
    --contention-from "$S/profile.json" >&2
  mpi bench-routing --model "$W/wide" --routing-trace "$W/trace.jsonl" --expert-maps "$S/round-robin.json,$S/full.json" \
    --policies $policies --repeats 3 --csv "$S/measured.csv" >&2
  run "$moe" simulate --cluster "$S/cluster.json" --profile "$S/profile.json" --trace "$W/trace.jsonl" \
    --placement "$S/round-robin.json,$S/full.json" --policy $policies --warmup 1 --passes 3 --interleave \
    --out "$S/predicted.csv" >&2
  python3 "$compare" replay --measured "$S/measured.csv" --predicted "$S/predicted.csv" --setting "$name"
  mpi generate --model "$W/wide" --input "$W/prompts.jsonl" --quiet --max-new-tokens 8 --batch-size 8 \
    --trace "$S/live-timeline.json" --record-routing "$S/live-routing.jsonl" >&2
  run "$moe" simulate --cluster "$S/cluster.json" --profile "$S/profile.json" --trace "$S/live-routing.jsonl" \
    --placement "$S/round-robin.json" --policy static --warmup 0 --passes 1 --per-call "$S/live-predicted.csv" >&2
  python3 "$compare" live --chrome "$S/live-timeline.json" --predicted "$S/live-predicted.csv" --setting "$name"
  python3 "$compare" live --chrome "$S/live-timeline.json" --predicted "$S/live-predicted.csv" --setting "$name" --steady
  python3 "$compare" compute --chrome "$S/live-timeline.json" --routing "$S/live-routing.jsonl" --profile "$S/profile.json"
done
