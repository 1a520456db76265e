#!/usr/bin/env bash
# One bad-input case against the real `moe` binary: it must exit non-zero with exactly one line on
# stderr that names the problem. Usage: bad_input.sh MOE_BINARY FIXTURE_MODEL_DIR CASE
set -uo pipefail
moe=$1 fixture=$2 case=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$fixture" "$work/model"
weights="$work/model/model.safetensors"
echo '{"id": "a", "input_ids": [5, 6, 7, 1]}' >"$work/in.jsonl"
output=$work/out.jsonl
extra=()
command=generate

case $case in
  truncated_safetensors)
    truncate -s -1000 "$weights"
    expect="model.safetensors: tensor '.*': data_offsets \[.*\] lie beyond the data section" ;;
  wrong_dtype)  # the first tensor's F32 becomes I32: same size, not a float
    sed -i '0,/"F32"/s//"I32"/' "$weights"
    expect="model.safetensors: tensor '.*' has dtype I32, expected a floating-point dtype" ;;
  missing_expert_tensor)
    sed -i 's/expert_3\.wi\.weight/expert_3.wX.weight/' "$weights"
    expect="missing tensor '.*mlp.experts.expert_3.wi.weight'" ;;
  config_missing_field)
    sed -i 's/"d_model"/"d_model_renamed"/' "$work/model/config.json"
    expect="config.json: missing field 'd_model'" ;;
  t5_gated_ffn)  # a T5 v1.1 / FLAN-T5 config on the T5 fixture
    sed -i 's/"feed_forward_proj": *"relu"/"feed_forward_proj": "gated-gelu"/' "$work/model/config.json"
    expect="config.json: field 'feed_forward_proj' = 'gated-gelu' is not supported: gated FFNs" ;;
  t5_missing_dense_tensor)  # on the T5 fixture
    sed -i 's/decoder\.block\.1\.layer\.2\.DenseReluDense\.wi\.weight/decoder.block.1.layer.2.DenseReluDense.wX.weight/' "$weights"
    expect="missing tensor 'decoder.block.1.layer.2.DenseReluDense.wi.weight'" ;;
  config_impossible_value)
    sed -i 's/"num_heads": *[0-9]*/"num_heads": 0/' "$work/model/config.json"
    expect="config.json: field 'num_heads' = 0 is out of range" ;;
  token_out_of_vocab)
    echo '{"id": "b", "input_ids": [5, 100000, 1]}' >"$work/in.jsonl"
    expect="in.jsonl:1: field 'input_ids' has token id 100000 outside the vocabulary" ;;
  truncated_spiece_model)  # cut just after a piece: it still parses, as fewer pieces
    python3 - "$work/model/spiece.model" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
def varint(at):
    value = shift = 0
    while True:
        byte = data[at]; at += 1; value |= (byte & 0x7f) << shift; shift += 7
        if not byte & 0x80: return value, at
ends, at = [], 0  # where each top-level field ends, for the pieces (field 1)
while at < len(data):
    tag, at = varint(at); length, at = varint(at); at += length
    if tag >> 3 == 1: ends.append(at)
open(sys.argv[1], "wb").write(data[:ends[-5]])
PY
    expect="spiece.model: SentencePiece model ends after its [0-9]+ pieces, with no trainer_spec: the file is truncated" ;;
  prompt_too_long)  # refused before any work, naming the line and the limit
    echo '{"id": "b", "input_ids": [5, 6, 1]}' >>"$work/in.jsonl"
    python3 -c "import json; print(json.dumps({'id': 'c', 'input_ids': [5] * 600 + [1]}))" >>"$work/in.jsonl"
    expect="in.jsonl:3: 601 input tokens, more than --max-input-tokens 512" ;;
  max_new_tokens_huge)
    extra=(--max-new-tokens 1000000000)
    expect="--max-new-tokens 1000000000 needs about .* GiB beyond the weights; .* GiB are available" ;;
  duplicate_id)
    echo '{"id": "a", "input_ids": [8, 1]}' >>"$work/in.jsonl"
    expect='in.jsonl:2: id "a" was given on line 1 too' ;;
  too_many_threads)
    extra=(--threads 100000)
    expect="--threads 100000: must be from 1 to the machine's [0-9]+ CPU\(s\)" ;;
  trace_unwritable)
    extra=(--trace "$work/no-such-dir/trace.json")
    expect="no-such-dir/trace.json: cannot write into .*no-such-dir" ;;
  colocate_alone)  # one process has no other rank to share the experts with
    extra=(--colocate)
    expect="--colocate needs two ranks or more \\(mpirun -np N\\)" ;;
  forward_without_decoder_ids)
    command=forward
    output=$work/out.safetensors
    expect="in.jsonl:1: moe forward needs 'decoder_input_ids'" ;;
  output_is_input)
    output=$work/in.jsonl
    expect="in.jsonl: is the input file too; refusing to overwrite it" ;;
  output_is_symlink)
    echo kept >"$work/elsewhere.txt"
    ln -s "$work/elsewhere.txt" "$work/link.jsonl"
    output=$work/link.jsonl
    expect="link.jsonl: refusing to write the output over a symbolic link" ;;
  *) echo "unknown case $case"; exit 2 ;;
esac

"$moe" "$command" --model "$work/model" --input "$work/in.jsonl" --output "$output" "${extra[@]}" \
  >"$work/stdout" 2>"$work/stderr"
status=$?
lines=$(wc -l <"$work/stderr")
echo "exit $status; stderr: $(cat "$work/stderr")"
[[ $status -ne 0 ]] || { echo "FAIL: exit status 0"; exit 1; }
[[ $lines -eq 1 ]] || { echo "FAIL: $lines lines on stderr, expected 1"; exit 1; }
grep -Eq -e "$expect" "$work/stderr" || { echo "FAIL: stderr does not match: $expect"; exit 1; }
[[ ! -e "$work/out.jsonl" && ! -e "$work/out.safetensors" ]] ||
  { echo "FAIL: an output file was left behind"; exit 1; }
! ls "$work" | grep -q partial || { echo "FAIL: a temporary file was left behind"; exit 1; }
case $case in  # nothing the refused output named was touched
  output_is_input) grep -q '"input_ids": \[5, 6, 7, 1\]' "$work/in.jsonl" || { echo "FAIL: input changed"; exit 1; } ;;
  output_is_symlink) [[ -L $work/link.jsonl && $(cat "$work/elsewhere.txt") == kept ]] ||
    { echo "FAIL: the link or its target changed"; exit 1; } ;;
esac
echo "ok: $case"
