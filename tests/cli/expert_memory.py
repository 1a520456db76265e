#!/usr/bin/env python3
"""--expert-memory (one process), real processes and real files:
1. wait and on-demand give the ids of the all-resident run, at budgets of 50% and 0%, on the
   trained default model and on the reference fixtures; substitute and skip with a fixed committee
   give the same ids run after run.
2. Resident memory stays under the budget: on a generated checkpoint with 8 MiB experts (32 of
   them, 256 MiB), the process's peak resident memory (ru_maxrss, load included) with a budget is
   at most that with no expert resident plus the budget plus one expert (a background swap), one
   more for wait and on-demand (a load in a step), plus a small slack; with every expert resident it is at least the experts' bytes above it.
3. moe plan-memory: a plan from a routing trace of the all-resident run; the run under it prints
   its measured resident routed mass within 3 points of the prediction, and its committees.
4. Bad input is refused with one line naming the option.
Usage: expert_memory.py MOE_BINARY SOURCE_DIR"""
import array
import json
import os
import struct
import subprocess
import sys
import tempfile

moe, src = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="expert-memory-")
MiB = 1 << 20


def run(args, check=True):
    """Runs moe generate; returns (ids per request, the process's peak resident memory, its
    stdout, or its stderr when it failed)."""
    out, log, err = (os.path.join(work, n) for n in ("out.jsonl", "stdout", "stderr"))
    with open(log, "w") as so, open(err, "w") as se:
        p = subprocess.Popen([moe, "generate", "--output", out] + args, stdout=so, stderr=se)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own ru_maxrss
        p.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024
    if p.returncode != 0:
        if check:
            sys.exit(f"FAIL: {' '.join(args)}\n{open(err).read()}")
        return None, peak, open(err).read()
    return [json.loads(line)["output_ids"] for line in open(out)], peak, open(log).read()


def fixture_requests(model_dir):
    path = os.path.join(work, os.path.basename(os.path.dirname(model_dir)) + ".jsonl")
    with open(path, "w") as f:
        subprocess.run([os.path.join(os.path.dirname(moe), "tests", "fixture_tool"), "requests",
                        os.path.dirname(model_dir)], stdout=f, check=True)
    return path


# 1. Exactness and determinism.
tiny = os.path.join(src, "configs", "models", "switch-tiny")
cases = [(tiny, os.path.join(tiny, "prompts.jsonl"))]
for fixture in ("switch8_f32", "switch4_drop_f32"):
    model = os.path.join(src, "tests", "reference", "fixtures", fixture, "model")
    cases.append((model, fixture_requests(model)))
for model, prompts in cases:
    common = ["--model", model, "--input", prompts, "--max-new-tokens", "12", "--quiet"]
    full, _, _ = run(common)
    for memory in ("50%", "0"):
        for policy in ("wait", "on-demand"):
            for committee in ("dynamic", "random"):
                ids, _, _ = run(common + ["--expert-memory", memory, "--on-missing-expert", policy,
                                          "--committee", committee])
                if ids != full:
                    sys.exit(f"FAIL: {model}: {policy} at {memory} ({committee}) differs from "
                             f"the all-resident run")
        for policy in ("substitute", "skip"):
            for committee in ("magnitude", "random"):
                flags = ["--expert-memory", memory, "--on-missing-expert", policy,
                         "--committee", committee]
                first, _, _ = run(common + flags)
                again, _, _ = run(common + flags)
                if first != again:
                    sys.exit(f"FAIL: {model}: {policy} at {memory} ({committee}) differs between "
                             f"two runs")
    print(f"{model}: wait and on-demand equal the all-resident run at 50% and 0%")

# 2. Resident memory against the budget, on a checkpoint with 8 MiB experts.
wide = os.path.join(work, "wide")
os.makedirs(wide)
config = json.load(open(os.path.join(tiny, "config.json")))
config.update(d_model=256, d_ff=4096, d_kv=64, num_heads=4, vocab_size=128)
json.dump(config, open(os.path.join(wide, "config.json"), "w"))


def values(n, seed):
    """n floats of a fixed pseudo-random pattern, scale about 0.02 (a block repeated: fast)."""
    block = array.array("f", [((i * 2654435761 + seed * 97) % 2001 - 1000) * 2e-5
                              for i in range(4093)])
    whole = block * (n // len(block) + 1)
    return whole[:n]


tensors = {}
d, ff, inner = 256, 4096, 256
tensors["shared.weight"] = (128, d)
for stack, ffn in (("encoder", 1), ("decoder", 2)):
    tensors[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (32, 4)
    tensors[f"{stack}.final_layer_norm.weight"] = (d,)
    for b in range(4):
        layers = [(0, "SelfAttention")] + ([(1, "EncDecAttention")] if stack == "decoder" else [])
        for i, name in layers:
            for p in "qkv":
                tensors[f"{stack}.block.{b}.layer.{i}.{name}.{p}.weight"] = (inner, d)
            tensors[f"{stack}.block.{b}.layer.{i}.{name}.o.weight"] = (d, inner)
            tensors[f"{stack}.block.{b}.layer.{i}.layer_norm.weight"] = (d,)
        tensors[f"{stack}.block.{b}.layer.{ffn}.layer_norm.weight"] = (d,)
        mlp = f"{stack}.block.{b}.layer.{ffn}.mlp"
        if b % 2 == 1:
            tensors[f"{mlp}.router.classifier.weight"] = (8, d)
            for e in range(8):
                tensors[f"{mlp}.experts.expert_{e}.wi.weight"] = (ff, d)
                tensors[f"{mlp}.experts.expert_{e}.wo.weight"] = (d, ff)
        else:
            tensors[f"{mlp}.wi.weight"] = (ff, d)
            tensors[f"{mlp}.wo.weight"] = (d, ff)
header, offset = {}, 0
for name, shape in tensors.items():
    n = 1
    for s in shape:
        n *= s
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + 4 * n]}
    offset += 4 * n
head = json.dumps(header).encode()
head += b" " * (-len(head) % 8)
with open(os.path.join(wide, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head)
    for seed, (name, shape) in enumerate(tensors.items()):
        n = 1
        for s in shape:
            n *= s
        v = array.array("f", [1.0]) * n if name.endswith("layer_norm.weight") else values(n, seed)
        v.tofile(f)
prompts = os.path.join(work, "wide.jsonl")
with open(prompts, "w") as f:
    for i in range(4):
        f.write(json.dumps({"id": i, "input_ids": [5 + (i * 7 + j * 3) % 100 for j in range(20)] + [1]}) + "\n")
expert = 2 * ff * d * 4
common = ["--model", wide, "--input", prompts, "--max-new-tokens", "8", "--quiet"]
slack = 6 * MiB
rows = []
for memory, policy, experts in (("0", "substitute", 0), ("0", "on-demand", 0),
                                ("25%", "substitute", 8), ("50%", "wait", 16), ("", "", 32)):
    flags = ["--expert-memory", memory, "--on-missing-expert", policy] if memory else []
    _, peak, _ = run(common + flags)
    rows.append((memory or "all", policy, experts, peak))
base = rows[0][3]
for memory, policy, experts, peak in rows:
    print(f"budget {memory:>4} ({policy or 'no budget'}): {experts} experts resident, peak resident "
          f"memory {peak / MiB:.1f} MiB")
for memory, policy, experts, peak in rows[1:4]:
    # One expert beyond the committee for a background swap, one for a load in a step.
    limit = base + (experts + 1 + (policy in ("wait", "on-demand"))) * expert + slack
    if peak > limit:
        sys.exit(f"FAIL: budget {memory} ({policy}): peak resident memory {peak / MiB:.1f} MiB "
                 f"> {limit / MiB:.1f} MiB (no experts {base / MiB:.1f} + budget + slack)")
full_peak = rows[-1][3]
if full_peak < base + 30 * expert:
    sys.exit("FAIL: the all-resident run did not hold its experts: the check above proves nothing")

# 3. The committee planner.
trace = os.path.join(work, "trace.jsonl")
prompts_tiny = os.path.join(tiny, "prompts.jsonl")
run(["--model", tiny, "--input", prompts_tiny, "--record-routing", trace])
plan = os.path.join(work, "plan.json")
p = subprocess.run([moe, "plan-memory", "--model", tiny, "--trace", trace, "--memory", "50%",
                    "--out", plan], capture_output=True, text=True)
if p.returncode != 0 or "committees per sparse layer" not in p.stdout:
    sys.exit(f"FAIL: moe plan-memory:\n{p.stdout}{p.stderr}")
_, _, log = run(["--model", tiny, "--input", prompts_tiny, "--memory-plan", plan, "--committee",
                 "magnitude"])
import re
m = re.search(r"routed probability mass resident ([\d.]+)% against ([\d.]+)%", log)
if not m or abs(float(m.group(1)) - float(m.group(2))) > 3.0:
    sys.exit(f"FAIL: measured resident mass far from the plan's:\n{log}")
print(f"plan-memory: resident routed mass measured {m.group(1)}%, predicted {m.group(2)}%")
p = subprocess.run([moe, "plan-memory", "--model", tiny, "--trace", trace, "--memory", "50%",
                    "--on-missing-expert", "on-demand", "--latency-ms", "0.000001",
                    "--base-ms-per-token", "0.0000001", "--out", plan + ".2"],
                   capture_output=True, text=True)
if p.returncode == 0 or "no plan meets the budgets: latency" not in p.stderr:
    sys.exit(f"FAIL: an impossible latency budget was not refused:\n{p.stdout}{p.stderr}")

# 4. Bad input.
for flags, message in (
        (["--expert-memory", "lots"], "--expert-memory 'lots': give bytes"),
        (["--expert-memory", "150%"], "--expert-memory '150%'"),
        (["--expert-memory", "50%", "--on-missing-expert", "later"],
         "--on-missing-expert: 'later' is not one of"),
        (["--expert-memory", "50%", "--committee", "all"], "--committee: 'all' is not one of"),
        (["--expert-memory", "50%", "--weights", "int8"], "--expert-memory needs a float32 CPU device"),
        (["--expert-memory", "50%", "--memory-plan", plan], "--memory-plan sets the committees"),
        (["--memory-plan", os.path.join(tiny, "config.json")], "config.json: [json.exception")):
    ids, _, err = run(["--model", tiny, "--input", os.path.join(tiny, "prompts.jsonl")] + flags,
                      check=False)
    if ids is not None or message not in err:
        sys.exit(f"FAIL: {' '.join(flags)}: expected an error with '{message}', got:\n{err}")
bf16 = os.path.join(src, "tests", "reference", "fixtures", "switch8_bf16_sharded", "model")
ids, _, err = run(["--model", bf16, "--input", fixture_requests(bf16), "--expert-memory", "50%"],
                  check=False)
if ids is not None or "is not stored as float32" not in err:
    sys.exit(f"FAIL: a bf16 checkpoint under a budget: expected a refusal, got:\n{err}")
print("bad input refused")
subprocess.run(["rm", "-rf", work])
print("PASS")
