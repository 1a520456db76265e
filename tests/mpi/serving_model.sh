#!/usr/bin/env bash
# The serving model end to end on the default model: `moe profile --serving-rows` writes serving
# curves with the exchanges the model's layers make (sparse layers and the lm_head's share in a
# decode step; sparse layers and the encoder's dense FFNs, which go to the expert ranks, in an
# encoder pass); `moe plan` weighs every split of 3 ranks and the 3 co-located, and names the
# fastest as a command;
# `moe generate --profile` with --micro-batches left open takes the model's choice (its trace shows
# that many lanes), prints its prediction beside the measurement, and generates the ids of the
# single-process run; a run the curves do not describe (another dense FFN placement, another thread
# count) says why and gets no prediction; and a profile without curves is refused by moe plan,
# naming the option.
# No assertion on the prediction's error: on this tiny model the run is dominated by noise (the
# switch-base-8 shape is measured by tests/bench/distributed_bench.py).
# Usage: serving_model.sh BUILD_DIR
set -euo pipefail
build=$1
moe=$build/moe tool=$build/tests/fixture_tool
model=$(cd "$(dirname "$0")/../../configs/models/switch-tiny" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$0")/../../launch/mpirun_flags.sh"
fail() {
  echo "FAIL: $*"
  exit 1
}

echo "+ mpirun -np 3 moe profile --contention 2 --serving-rows 1,2,4,8"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" profile --model "$model" --out "$work/profile.json" \
  --token-counts 1,2,4,8 --repeats 2 --contention 2 --serving-rows 1,2,4,8 --serving-steps 3 \
  --deadline 60 >"$work/profile.log" 2>&1 || { cat "$work/profile.log"; fail "moe profile"; }
python3 - "$work/profile.json" "$model/config.json" <<'EOF'
import json, sys
p, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
s = p["serving"]
assert s["decode_sequences"] == [1, 2, 4, 8], s["decode_sequences"]
assert s["encode_tokens"] == [16, 32, 64, 128], s["encode_tokens"]
for key in ("decode_attention_us", "decode_experts_us", "encode_attention_us", "encode_experts_us"):
    assert len(s[key]) == 4 and all(v > 0 for v in s[key]), (key, s[key])
assert all(v == 0 for v in s["decode_dense_us"]), s["decode_dense_us"]  # decoder's on attention
assert all(0 < d < e for d, e in zip(s["encode_dense_us"], s["encode_experts_us"])), s
sparse_dec, sparse_enc = c["num_sparse_decoder_layers"], c["num_sparse_encoder_layers"]
dense_enc = c["num_layers"] - sparse_enc
assert s["decode_exchanges"] == sparse_dec + 1, s  # the sparse layers and the lm_head's share
assert s["encode_exchanges"] == sparse_enc + dense_enc and s["encode_dense_exchanges"] == dense_enc, s
assert s["dense_ffn"] == "x" * dense_enc + "a" * (c["num_decoder_layers"] - sparse_dec), s
assert s["lm_head_on_experts"] == 0.5 and s["threads"] == 1, s
assert p["contention"]["value"] >= 0, p["contention"]
print("profile: serving curves and exchange counts as the model's layers make them")
EOF

echo "+ moe plan --ranks 3 --batch-size 8"
"$moe" plan --profile "$work/profile.json" --ranks 3 --batch-size 8 --requests 24 --input-tokens 6-14 \
  --new-tokens 12 >"$work/plan.txt" || { cat "$work/plan.txt"; fail "moe plan"; }
cat "$work/plan.txt"
rows=$(grep -cE '^[12] +[12] +[1-4] ' "$work/plan.txt" || true)
[[ $rows -eq 8 ]] || fail "moe plan printed $rows layouts, not 2 splits x 4 micro-batch counts"
rows=$(grep -cE '^3 +same +[1-4] +8 ' "$work/plan.txt" || true)
[[ $rows -eq 4 ]] || fail "moe plan printed $rows co-located layouts of 3 ranks, not 4"
grep -q '^1 (alone)' "$work/plan.txt" || fail "moe plan printed no one-process row"
chosen=$(grep '^chosen: ' "$work/plan.txt") || fail "moe plan chose nothing"
# The chosen layout's row: "M N m" split, or "3 same m" co-located.
in_table() {  # in_table PLAN_FILE NP BATCH
  local chosen np=$2 b=$3 m
  chosen=$(grep '^chosen: ' "$1") || fail "moe plan chose nothing"
  m=$(sed -E 's/.*--micro-batches ([0-9]+).*/\1/' <<<"$chosen")
  if [[ $chosen == *--colocate* ]]; then
    grep -qE "^$np +same +$m +$b " "$1" || fail "the chosen co-located layout is not in the table"
  else
    M=$(sed -E 's/.*--attention-ranks ([0-9]+).*/\1/' <<<"$chosen")
    grep -qE "^$M +$((np - M)) +$m +$b " "$1" || fail "the chosen layout is not in the table"
  fi
}
in_table "$work/plan.txt" 3 8

echo "+ moe plan --ranks 2,4 --in-flight 8 --cores 2 (more ranks than cores, the same sequences)"
"$moe" plan --profile "$work/profile.json" --ranks 2,4 --in-flight 8 --cores 2 --requests 24 \
  --input-tokens 6-14 --new-tokens 12 >"$work/plan24.txt" || { cat "$work/plan24.txt"; fail "moe plan"; }
cat "$work/plan24.txt"
grep -qE '^1 \(alone\) +0 +1 +8 ' "$work/plan24.txt" || fail "the one-process row does not hold all 8"
# Each attention rank its share: 1 + 1 holds 8, 2 + 2 holds 4 each, micro-batches 1 to 4 apiece.
[[ $(grep -cE '^1 +1 +[1-4] +8 ' "$work/plan24.txt") -eq 4 ]] || fail "1 + 1 not weighed at 8"
[[ $(grep -cE '^2 +2 +[1-4] +4 ' "$work/plan24.txt") -eq 4 ]] || fail "2 + 2 not weighed at 4 each"
[[ $(grep -cE '^2 +same +[1-4] +4 ' "$work/plan24.txt") -eq 4 ]] || fail "2 co-located not weighed at 4 each"
[[ $(grep -cE '^4 +same +[1-4] +2 ' "$work/plan24.txt") -eq 2 ]] || fail "4 co-located not weighed at 2 each"
chosen=$(grep '^chosen: ' "$work/plan24.txt") || fail "moe plan chose nothing"
read -r np b < <(sed -E 's/.*-np ([0-9]+) .*--batch-size ([0-9]+).*/\1 \2/' <<<"$chosen")
if [[ $chosen == *--colocate* ]]; then M=$np; else M=$(sed -E 's/.*--attention-ranks ([0-9]+).*/\1/' <<<"$chosen"); fi
[[ $((M * b)) -eq 8 ]] || fail "the chosen layout holds $M x $b sequences, not 8"
in_table "$work/plan24.txt" "$np" "$b"
if "$moe" plan --profile "$work/profile.json" --ranks 4 --in-flight 7 --attention-ranks 2 >"$work/odd.log" 2>&1; then
  fail "moe plan weighed 2 attention ranks sharing 7 sequences"
fi
grep -q "do not divide --in-flight" "$work/odd.log" || { cat "$work/odd.log"; fail "the uneven share was not named"; }

common=(--model "$model" --input "$model/prompts.jsonl" --max-new-tokens 12 --batch-size 8 --quiet --deadline 60)
"$moe" generate "${common[@]}" --output "$work/single.jsonl" >/dev/null
echo "+ mpirun -np 3 moe generate --profile (micro-batches left to the model)"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate "${common[@]}" --profile "$work/profile.json" \
  --trace "$work/trace.json" --output "$work/multi.jsonl" >"$work/generate.log" 2>&1 ||
  { cat "$work/generate.log"; fail "moe generate"; }
grep -E '^(micro-batches|serving model)' "$work/generate.log"
grep -qE '^micro-batches: [1-4], chosen by the serving model \(predicted tokens/s: [0-9]+ at 1, ' \
  "$work/generate.log" || fail "no micro-batch count chosen by the model"
chosen_m=$(sed -nE 's/^micro-batches: ([1-4]), chosen by the serving model.*/\1/p' "$work/generate.log")
# The run used that many lanes: rank 0's events in the trace carry one lane (tid) per micro-batch.
used_m=$(python3 -c "import json, sys; e = json.load(open(sys.argv[1]))['traceEvents']
print(len({x['tid'] for x in e if x.get('ph') == 'X' and x['pid'] == 0}))" "$work/trace.json")
[[ $used_m -eq $chosen_m ]] || fail "the model chose $chosen_m micro-batches, the run used $used_m"
grep -qE '^serving model: predicted [0-9.]+ tokens/s .*measured [0-9.]+ tokens/s .*: [-+][0-9.]+%$' \
  "$work/generate.log" || fail "no prediction beside the measurement"
"$tool" compare "$work/single.jsonl" "$work/multi.jsonl" 0

echo "+ mpirun -np 2 moe generate --colocate --profile (the curves moved to co-located ranks)"
mpirun "${MPIRUN_FLAGS[@]}" -np 2 "$moe" generate "${common[@]}" --profile "$work/profile.json" \
  --colocate --output "$work/colocated.jsonl" >"$work/colocated.log" 2>&1 ||
  { cat "$work/colocated.log"; fail "moe generate --colocate"; }
grep -E '^serving model' "$work/colocated.log"
grep -qE '^serving model: predicted [0-9.]+ tokens/s .*measured [0-9.]+ tokens/s .*: [-+][0-9.]+%$' \
  "$work/colocated.log" || fail "no prediction beside the measurement of the co-located run"
"$tool" compare "$work/single.jsonl" "$work/colocated.jsonl" 0

echo "+ mpirun -np 3 moe generate --profile --dense-ffn attention (curves of another placement)"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate "${common[@]}" --profile "$work/profile.json" \
  --dense-ffn attention --output "$work/other.jsonl" >"$work/other.log" 2>&1 || { cat "$work/other.log"; fail "moe generate"; }
grep -q '^micro-batches: [0-9], from the batch size (no serving model: the serving curves were measured with another placement of the dense FFNs' \
  "$work/other.log" || { cat "$work/other.log"; fail "the other placement was not named"; }
grep -q '^serving model: no prediction (the serving curves were measured with another placement' "$work/other.log" ||
  fail "a prediction for a run the curves do not describe"
"$tool" compare "$work/single.jsonl" "$work/other.jsonl" 0

echo "+ mpirun -np 3 moe generate --profile --threads 2"
mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$moe" generate "${common[@]}" --profile "$work/profile.json" \
  --threads 2 --micro-batches 2 --output "$work/threads.jsonl" >"$work/threads.log" 2>&1 || { cat "$work/threads.log"; fail "moe generate"; }
grep -q '^serving model: no prediction (the serving curves were measured with 1 thread(s) per rank, this run has 2)' \
  "$work/threads.log" || { cat "$work/threads.log"; fail "the thread count was not named"; }

echo "+ moe plan with a profile without serving curves"
python3 -c "import json,sys; p=json.load(open(sys.argv[1])); del p['serving']; json.dump(p, open(sys.argv[2], 'w'))" \
  "$work/profile.json" "$work/bare.json"
if "$moe" plan --profile "$work/bare.json" --ranks 3 >"$work/bare.log" 2>&1; then fail "moe plan ran without curves"; fi
grep -q "bare.json: has no serving curves: measure them with moe profile --serving-rows" "$work/bare.log" ||
  { cat "$work/bare.log"; fail "the missing curves were not named"; }
echo "PASS"
