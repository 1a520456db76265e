#!/usr/bin/env bash
# Disaggregated serving must not change a generated id: for M attention ranks, N expert ranks and
# m micro-batches per attention rank (every expert on every expert rank, so the policy decides
# where each token goes), `moe generate` under mpirun -np M+N equals the single-process run; and
# continuous batching (4 at a time, a finished sequence's place taken at once) equals one request
# at a time.
# A layout C:n:m is co-located (--colocate): n ranks, each attending to its share of the requests
# and holding every expert, m micro-batches each.
# Usage: layouts.sh BUILD_DIR MODEL_DIR REQUESTS_JSONL POLICY "M:N:m ..." [extra generate args]
# latency-aware first profiles the ranks and trains its model (as equal_to_single_process.sh does);
# co-located ranks have no profile (moe profile times expert ranks), so it skips those layouts.
set -euo pipefail
build=$1 model=$2 requests=$3 policy=$4 layouts=$5
shift 5
moe=$build/moe tool=$build/tests/fixture_tool
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$0")/../../launch/mpirun_flags.sh"
mpirun=${MOE_MPIRUN:-mpirun}  # tests/multinode/mpirun.sh runs the same across two hosts
common=(--model "$model" --input "$requests" --max-new-tokens 12 --quiet --deadline 60 "$@")
"$moe" generate "${common[@]}" --batch-size 4 --output "$work/single.jsonl" >/dev/null
"$moe" generate "${common[@]}" --batch-size 1 --output "$work/one-at-a-time.jsonl" >/dev/null
"$tool" compare "$work/one-at-a-time.jsonl" "$work/single.jsonl" 0 | sed "s/^/batch 4 vs 1 at a time: /"
for layout in $layouts; do
  IFS=: read -r M N m <<<"$layout"
  if [[ $M == C ]]; then
    np=$N
    if [[ $policy == latency-aware ]]; then
      echo "C:$np:$m $policy: skipped (co-located ranks have no profile)"
      continue
    fi
    "$tool" replicated-map "$model" "$np" 0 >"$work/map.json"
    extra=(--policy "$policy" --expert-map "$work/map.json" --colocate --micro-batches "$m")
    label="co-located n=$np m=$m"
  else
    np=$((M + N))
    "$tool" replicated-map "$model" "$np" "$M" >"$work/map.json"
    extra=(--policy "$policy" --expert-map "$work/map.json" --attention-ranks "$M" --micro-batches "$m")
    label="M=$M N=$N m=$m"
  fi
  if [[ $policy == latency-aware && ! -f $work/latency-$np.bin ]]; then
    # Profiled as one coordinator and M+N-1 expert ranks: the run's expert ranks are among them.
    "$tool" replicated-map "$model" "$np" 1 >"$work/profile-map.json"
    "$mpirun" "${MPIRUN_FLAGS[@]}" -np "$np" "$moe" profile --model "$model" --expert-map "$work/profile-map.json" \
      --out "$work/profile-$np.json" --token-counts 1,2,4,8 --repeats 2 --max-experts 2 \
      --record-latency-samples "$work/samples.csv" --deadline 60 >"$work/profile.log" 2>&1
    "$moe" train-latency-model --samples "$work/samples.csv" --out "$work/latency-$np.bin" \
      --epochs 30 >>"$work/profile.log"
  fi
  [[ $policy == latency-aware ]] &&
    extra+=(--profile "$work/profile-$np.json" --latency-model "$work/latency-$np.bin")
  echo "+ mpirun -np $np moe generate ... ${extra[*]}"
  "$mpirun" "${MPIRUN_FLAGS[@]}" -np "$np" "$moe" generate "${common[@]}" --batch-size 4 "${extra[@]}" \
    --output "$work/multi.jsonl" >"$work/multi.log"
  "$tool" compare "$work/single.jsonl" "$work/multi.jsonl" 0 | sed "s/^/$label $policy: /"
done
