#!/usr/bin/env python3
"""--expert-memory on a GPU (needs one; tests/cuda/run_on_gpu.sh runs it): device memory for the
committee, backed by the experts' pinned host copies, swapped on the device's copy stream.
1. One process on cuda:0: wait and on-demand at 50% and 25% give the ids of the all-resident
   cuda:0 run; substitute runs through; each run's summary names the GPU tier and its peak device
   memory in use, which stays within that of a run with no committee (on-demand at 0: the step's
   buffers and one expert in flight) plus the budget plus one expert (plus 8 MiB for the
   allocator's granularity). The default model's experts are small (1.5 MiB in all): this checks
   the wiring and exactness; the unit tests check that drops free their bytes.
2. Under mpirun, a GPU expert rank beside a CPU one (cpu:1,cuda:0,cpu:1), both under the budget:
   wait equals the single-process CPU run.
Usage: expert_memory_gpu.py BUILD_DIR MODEL_DIR PROMPTS"""
import json
import os
import re
import subprocess
import sys
import tempfile

build, model, prompts = sys.argv[1:4]
moe = os.path.join(build, "moe")
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "launch"))
from mpirun_flags import mpirun_flags  # noqa: E402

flags = mpirun_flags()
work = tempfile.mkdtemp(prefix="gpu-expert-memory-")
config = json.load(open(os.path.join(model, "config.json")))
MiB = 1 << 20
expert_mib = 2 * 4 * config["d_model"] * config["d_ff"] / MiB


def generate(args, np=1):
    out = os.path.join(work, "out.jsonl")
    cmd = ([] if np == 1 else ["mpirun"] + flags + ["-np", str(np)]) + \
          [moe, "generate", "--model", model, "--input", prompts, "--output", out, "--quiet",
           "--max-new-tokens", "12", "--deadline", "120"] + args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return {json.loads(l)["id"]: json.loads(l)["output_ids"] for l in open(out)}, p.stdout + p.stderr


def peak(log):
    m = re.search(r"peak device memory in use after a load or swap ([\d.]+) MiB \(cuda:0 memory backed "
                  r"by pinned host memory\)", log)
    if not m:
        sys.exit(f"FAIL: no GPU-tier summary line:\n{log}")
    return float(m.group(1))


reference, _ = generate(["--devices", "cuda:0"])
# The floor: no committee, every expert loaded for its step and dropped after it (so the step's
# buffers and cuBLAS handles exist as in the budgeted runs, and one expert is in flight).
_, log = generate(["--devices", "cuda:0", "--expert-memory", "0", "--on-missing-expert", "on-demand"])
floor = peak(log)
for memory in ("50%", "25%"):
    for policy in ("wait", "on-demand", "substitute"):
        ids, log = generate(["--devices", "cuda:0", "--expert-memory", memory, "--on-missing-expert", policy])
        if policy != "substitute" and ids != reference:
            sys.exit(f"FAIL: cuda:0 at {memory}, {policy}: ids differ from the all-resident cuda:0 run")
        m = re.search(r"expert memory: (\d+) of (\d+) experts resident", log)
        seats = int(m.group(1))
        budget = seats * expert_mib
        used = peak(log) - floor
        print(f"cuda:0 at {memory}, {policy}: {seats} experts resident, device memory for experts "
              f"{used:.1f} MiB against a budget of {budget:.1f} MiB (+ {expert_mib:.1f} in flight)")
        if used > budget + expert_mib + 8:
            sys.exit(f"FAIL: cuda:0 at {memory}, {policy}: {used:.1f} MiB of device memory for experts")
cpu_reference, _ = generate([])
if cpu_reference != reference:
    print("note: the cuda:0 and CPU all-resident ids differ (float32 rounding); mpirun compares with the CPU run")
ids, log = generate(["--devices", "cpu:1,cuda:0,cpu:1", "--expert-memory", "50%", "--on-missing-expert", "wait"], np=3)
if ids != cpu_reference:
    sys.exit("FAIL: a GPU expert rank beside a CPU one under budgets (wait): ids differ from the CPU run")
if "cuda:0 memory backed by pinned host memory" not in log:
    sys.exit(f"FAIL: the GPU expert rank did not report its tier:\n{log}")
print("mpirun cpu:1,cuda:0,cpu:1 at 50%, wait: equal to the single-process CPU run")
subprocess.run(["rm", "-rf", work])
print("PASS")
