#!/usr/bin/env bash
# --truncate-input: a prompt longer than --max-input-tokens is cut to its first tokens (ending with
# end-of-sequence where it did) instead of refused, and answered as that cut prompt is.
# Usage: truncate_input.sh MOE_BINARY MODEL_DIR
set -euo pipefail
moe=$1 model=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
long = [5 + i % 90 for i in range(40)] + [1]  # ends with end-of-sequence (id 1)
plain = [7 + i % 50 for i in range(30)]        # does not
with open(f"{work}/long.jsonl", "w") as f:
    f.write(json.dumps({"id": "a", "input_ids": long}) + "\n")
    f.write(json.dumps({"id": "b", "input_ids": [5, 6, 1]}) + "\n")
    f.write(json.dumps({"id": "c", "input_ids": plain}) + "\n")
with open(f"{work}/cut.jsonl", "w") as f:  # what the cut must be
    f.write(json.dumps({"id": "a", "input_ids": long[:15] + [1]}) + "\n")
    f.write(json.dumps({"id": "b", "input_ids": [5, 6, 1]}) + "\n")
    f.write(json.dumps({"id": "c", "input_ids": plain[:16]}) + "\n")
PY
run() { "$moe" generate --model "$model" --max-new-tokens 8 --max-input-tokens 16 --quiet "$@"; }
# Without the flag the long prompts are refused, naming the line and the limit.
if run --input "$work/long.jsonl" 2>"$work/err"; then echo "FAIL: a long prompt was accepted"; exit 1; fi
grep -q "long.jsonl:1: 41 input tokens, more than --max-input-tokens 16" "$work/err"
run --input "$work/long.jsonl" --output "$work/long.out.jsonl" --truncate-input | tee "$work/stdout"
grep -q -- "--truncate-input: 2 of 3 prompts cut to 16 tokens" "$work/stdout"
run --input "$work/cut.jsonl" --output "$work/cut.out.jsonl"
python3 - "$work/long.out.jsonl" "$work/cut.out.jsonl" <<'PY'
import json, sys
strip = lambda path: [(a["id"], a["input_tokens"], a["output_ids"]) for a in map(json.loads, open(path))]
got, want = strip(sys.argv[1]), strip(sys.argv[2])
assert got == want, f"{got} != {want}"
print(f"ok: {len(got)} answers equal to the answers for the prompts cut by hand")
PY
