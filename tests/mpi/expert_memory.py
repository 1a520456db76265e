#!/usr/bin/env python3
"""--expert-memory on two expert ranks under mpirun (-np 3), real processes:
1. wait and on-demand give the ids of the single-process all-resident run, with the round-robin map
   (each expert on one rank) and with every expert on both ranks (replicas: tokens go to a replica
   where the expert is resident);
2. substitute and skip run to the end, each expert rank reports its committee, and the attention
   rank its substitutions;
3. the profile times a load on each expert rank; `moe place --expert-memory` keeps at least as much
   of the routed tokens resident as round-robin, and its map runs exact under wait; latency-aware
   routing that prices loads (every expert on both ranks) is exact under wait; --memory-plan under
   mpirun seats the plan's members on the ranks that hold them (wait exact, the report printed);
4. a compact weight format on an expert rank is refused, naming the rank.
Usage: expert_memory.py BUILD_DIR MODEL_DIR PROMPTS"""
import json
import os
import subprocess
import sys
import tempfile

build, model, prompts = sys.argv[1:4]
moe = os.path.join(build, "moe")
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "launch"))
from mpirun_flags import mpirun_flags  # noqa: E402

flags = mpirun_flags()
work = tempfile.mkdtemp(prefix="mpi-expert-memory-")


def generate(args, np=1, check=True):
    out = os.path.join(work, "out.jsonl")
    cmd = ([] if np == 1 else ["mpirun"] + flags + ["-np", str(np)]) + \
          [moe, "generate", "--model", model, "--input", prompts, "--output", out, "--quiet",
           "--max-new-tokens", "12", "--deadline", "60"] + args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    if p.returncode != 0:
        return None, p.stdout + p.stderr
    return {json.loads(l)["id"]: json.loads(l)["output_ids"] for l in open(out)}, p.stdout


reference, _ = generate([])
replicated = os.path.join(work, "replicated.json")
with open(replicated, "w") as f:
    subprocess.run([os.path.join(build, "tests", "fixture_tool"), "replicated-map", model, "3"],
                   stdout=f, check=True)
for map_args, name in (([], "round-robin map"), (["--expert-map", replicated], "every expert on both ranks")):
    for policy in ("wait", "on-demand"):
        for memory in ("50%", "0"):
            ids, log = generate(map_args + ["--expert-memory", memory, "--on-missing-expert", policy], np=3)
            if ids != reference:
                sys.exit(f"FAIL: {name}, {policy} at {memory}: ids differ from the single-process run")
            if log.count("expert memory:") != 2:
                sys.exit(f"FAIL: {name}: expected one budget line per expert rank:\n{log}")
    print(f"{name}: wait and on-demand at 50% and 0% equal the single-process run")
    for policy in ("substitute", "skip"):
        ids, log = generate(map_args + ["--expert-memory", "50%", "--on-missing-expert", policy], np=3)
        if set(ids) != set(reference) or "expert memory on the expert ranks" not in log:
            sys.exit(f"FAIL: {name}, {policy}: answers or report missing:\n{log}")
        agree = sum(ids[k] == reference[k] for k in reference)
        print(f"{name}, {policy} at 50%: {agree} of {len(reference)} answers equal the all-resident run")

# 3. The profile times a load on each expert rank; placement under the budget keeps more of the
# routed tokens resident than the round-robin map; latency-aware routing that prices loads (every
# expert on both ranks) stays exact under wait.
def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


profile, samples = os.path.join(work, "profile.json"), os.path.join(work, "samples.csv")
run(["mpirun"] + flags + ["-np", "3", moe, "profile", "--model", model, "--deadline", "60",
     "--out", profile, "--token-counts", "1,2,4,8", "--repeats", "2", "--max-experts", "2",
     "--record-latency-samples", samples])
loads = {r["rank"]: r.get("expert_load_us", 0) for r in json.load(open(profile))["ranks"]}
if sorted(loads) != [1, 2] or min(loads.values()) <= 0:
    sys.exit(f"FAIL: expected expert_load_us > 0 for ranks 1 and 2 in the profile, got {loads}")
print(f"profiled load of one expert: {', '.join(f'rank {r} {us / 1000:.2f} ms' for r, us in loads.items())}")
trace = os.path.join(work, "routing.jsonl")
generate(["--record-routing", trace])
placed_map = os.path.join(work, "placed.json")
text = run([moe, "place", "--profile", profile, "--trace", trace, "--out", placed_map,
            "--expert-memory", "50%"])
run_bytes = text.split("run with --expert-memory ")[1].split()[0]
share = {line.split()[0]: float(line.split()[2].rstrip("%")) for line in text.splitlines()
         if line.split() and line.split()[0] in ("placed", "round-robin")}
if len(share) != 2 or share["placed"] < share["round-robin"]:
    sys.exit(f"FAIL: placement under the budget keeps less resident than round-robin:\n{text}")
print(f"placement at 50%: {share['placed']:.1f}% of routed tokens resident, round-robin {share['round-robin']:.1f}%")
ids, _ = generate(["--expert-map", placed_map, "--expert-memory", run_bytes, "--on-missing-expert", "wait"], np=3)
if ids != reference:
    sys.exit("FAIL: the budget-aware placement with wait: ids differ from the single-process run")
latency_model = os.path.join(work, "latency.bin")
run([moe, "train-latency-model", "--samples", samples, "--out", latency_model, "--epochs", "30"])
ids, log = generate(["--expert-map", replicated, "--policy", "latency-aware", "--profile", profile,
                     "--latency-model", latency_model, "--expert-memory", "50%",
                     "--on-missing-expert", "wait"], np=3)
if "latency-aware prices a load on a non-resident replica" not in log:
    sys.exit(f"FAIL: latency-aware routing under budgets did not price loads:\n{log}")
if ids != reference:
    sys.exit("FAIL: latency-aware routing pricing loads, with wait: ids differ from the single-process run")
print("the budget-aware map and latency-aware routing that prices loads: wait equals the single-process run")
plan = os.path.join(work, "plan.json")
run([moe, "plan-memory", "--model", model, "--trace", trace, "--memory", "50%", "--profile", profile,
     "--out", plan])
for policy in ("wait", "substitute"):
    ids, log = generate(["--memory-plan", plan, "--on-missing-expert", policy], np=3)
    if "memory plan: measured against predicted" not in log or log.count("expert memory:") != 2:
        sys.exit(f"FAIL: --memory-plan under mpirun ({policy}): no measured-against-predicted line:\n{log}")
    if policy == "wait" and ids != reference:
        sys.exit("FAIL: --memory-plan under mpirun with wait: ids differ from the single-process run")
print("--memory-plan under mpirun: each expert rank seats the plan's members it holds; wait is exact")

ids, err = generate(["--expert-memory", "50%", "--devices", "cpu:1,cpu:1,cpu:1:int8"], np=3, check=False)
if ids is not None or "--expert-memory needs a float32 CPU device" not in err \
        or "of rank 2" not in err:
    sys.exit(f"FAIL: an int8 expert rank under a budget: expected a refusal naming rank 2, got:\n{err}")
print("an int8 expert rank under a budget is refused")
subprocess.run(["rm", "-rf", work])
print("PASS")
