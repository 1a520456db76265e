#!/usr/bin/env python3
"""Placement under a memory budget, measured: the same budget on every expert rank of a
heterogeneous -np 3 run (by default a full core and half a core), with three expert maps:
round-robin, "unbudgeted" (`moe place` as if every expert were resident: the faster rank gets
more experts, hot ones included) and "placed" (`moe place --expert-memory`: each layer's hottest
experts fill the ranks' committee seats first).

The trained default model (configs/models/switch-tiny); the maps are placed from a routing trace
of prompts drawn by make_prompts.py (not the evaluation prompts), the evaluation is its 600
held-out prompts in runs of one task, batch 8, 16 new tokens. For each budget and map: the
predicted share of routed tokens resident (moe place's table), the measured share (the attention
rank's count of routed tokens with no resident replica), token agreement with the single-process
all-resident run and exact-match accuracy per task, under `--on-missing-expert substitute`; and
milliseconds per token under `wait` (every miss loaded; exact).

With --wide DIR the same on a random checkpoint of switch-base-8's shape (random prompts, one
set to place from and another to run): agreement and time, where a miss loads 18 MiB from disk.

With --routing, also every expert on both expert ranks under the same budget: uniform and
latency-aware given only the resident replicas, against latency-aware pricing a load on a
non-resident one (the profile's expert_load_us): ms per token and loads in steps under wait,
resident share and agreement under substitute.

Usage: budget_placement_bench.py [--moe build/moe] [--devices cpu:1,cpu:1,cpu:1@0.5]
                                 [--budgets 50,25] [--csv FILE] [--wide DIR [--wide-prompts N]] [--routing]
Every command is printed with a leading '+'.
"""
import argparse
import csv
import json
import math
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "launch" / "experiments"))
sys.path.insert(0, str(ROOT / "launch"))
from mpirun_flags import mpirun_flags  # noqa: E402
from tiny_tasks import TASKS, heldout_examples  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from swap_bench import agreement  # noqa: E402

TINY = ROOT / "configs" / "models" / "switch-tiny"


def run(cmd):
    cmd = [str(c) for c in cmd]
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def generate(moe, model, args, out, np=1, flags=()):
    """Answers by id and ms per generated token."""
    prefix = ["mpirun", *flags, "-np", np] if np > 1 else []
    log = run(prefix + [moe, "generate", "--model", model, "--output", out, "--quiet", "--threads", 1,
                        "--deadline", 120] + list(args))
    m = re.search(r"generated (\d+) tokens for \d+ prompts in ([\d.]+) s", log)
    answers = {json.loads(line)["id"]: json.loads(line) for line in open(out)}
    return answers, 1000.0 * float(m.group(2)) / max(int(m.group(1)), 1), log


def predicted_shares(text):
    """moe place's table: map name -> predicted resident share (%)."""
    shares = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].endswith("%"):
            shares[parts[0]] = float(parts[2].rstrip("%"))
    return shares


def routing(a, flags, work, model_dir, evaluation, common, reference, profile, samples, even, expert_bytes):
    """Every expert on both expert ranks, the same budget on each: which replica serves a token.
    uniform and latency-aware without load times are given only the resident replicas; latency-aware
    with the profile's expert_load_us prices a load on a non-resident one instead."""
    replicated = work / "replicated.json"
    with open(replicated, "w") as f:
        subprocess.run([Path(a.moe).parent / "tests" / "fixture_tool", "replicated-map", model_dir, "3"],
                       stdout=f, check=True)
    latency_model = work / "latency.bin"
    run([a.moe, "train-latency-model", "--samples", samples, "--out", latency_model])
    unpriced = work / "profile-unpriced.json"
    p = json.load(open(profile))
    for r in p["ranks"]:
        r.pop("expert_load_us", None)
    json.dump(p, open(unpriced, "w"))
    rows = []
    for budget in [int(b) for b in a.budgets.split(",")]:
        memory = str(budget * even // 100 * expert_bytes)
        for label, policy, prof in (("uniform", "uniform", unpriced),
                                    ("latency-aware, resident only", "latency-aware", unpriced),
                                    ("latency-aware, loads priced", "latency-aware", profile)):
            dist = ["--devices", a.devices, "--expert-map", replicated, "--expert-memory", memory, "--policy", policy,
                    "--profile", prof, "--latency-model", latency_model]
            row = dict(budget=budget, policy=label)
            exact, row["wait_ms_per_token"], log = generate(
                a.moe, model_dir, ["--input", evaluation] + common + dist + ["--on-missing-expert", "wait"],
                work / "out.jsonl", np=3, flags=flags)
            if {k: v["output_ids"] for k, v in exact.items()} != {k: v["output_ids"] for k, v in reference.items()}:
                sys.exit(f"FAIL: wait with {label} at {budget}% differs from the all-resident run")
            row["loads_in_steps"] = sum(int(n) for n in re.findall(r"(\d+) loads in a step", log))
            answers, _, log = generate(
                a.moe, model_dir, ["--input", evaluation] + common + dist + ["--on-missing-expert", "substitute"],
                work / "out.jsonl", np=3, flags=flags)
            m = re.search(r"(\d+) of (\d+) routed tokens of rank \d+ had no resident replica", log)
            row["measured_resident"] = 100.0 * (1 - int(m.group(1)) / max(int(m.group(2)), 1))
            row["agreement"] = 100.0 * agreement(reference, answers)
            rows.append(row)
            print(row, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", default=str(ROOT / "build" / "moe"))
    ap.add_argument("--devices", default="cpu:1,cpu:1,cpu:1@0.5")
    ap.add_argument("--budgets", default="50,25")
    ap.add_argument("--csv")
    ap.add_argument("--wide", help="a random checkpoint of switch-base-8's shape instead of the trained model "
                    "(random prompts; agreement and time, no accuracy)")
    ap.add_argument("--wide-prompts", type=int, default=16)
    ap.add_argument("--routing", action="store_true",
                    help="also route over every expert on both ranks: uniform, latency-aware given only the "
                    "resident replicas, latency-aware pricing loads")
    a = ap.parse_args()
    flags = mpirun_flags()
    work = Path(tempfile.mkdtemp(prefix="budget-placement-"))
    model_dir = Path(a.wide) if a.wide else TINY
    evaluation, train = work / "evaluation.jsonl", work / "train.jsonl"
    answer_of = {}
    if a.wide:  # random prompts: one set to place from, another to run
        for path, seed in ((train, 7), (evaluation, 3)):
            rng = random.Random(seed)
            with open(path, "w") as f:
                for i in range(a.wide_prompts):
                    ids = [rng.randrange(2, 32000) for _ in range(rng.randint(12, 40))] + [1]
                    f.write(json.dumps({"id": i, "input_ids": ids}) + "\n")
    else:
        examples = heldout_examples()
        answer_of = {f"{task}-{i}": answer for i, (task, _, answer) in enumerate(examples)}
        with open(evaluation, "w") as f:
            for i, (task, prompt, _) in enumerate(examples):
                f.write(json.dumps({"id": f"{task}-{i}", "text": prompt}) + "\n")
        run([sys.executable, ROOT / "launch" / "experiments" / "make_prompts.py", "--count", 300, "--seed", 11,
             "--out", train])
    trace = work / "trace.jsonl"
    common = ["--batch-size", 8, "--max-new-tokens", 16]
    generate(a.moe, model_dir, ["--input", train, "--record-routing", trace] + common, work / "trace-out.jsonl")
    reference, base_ms, _ = generate(a.moe, model_dir, ["--input", evaluation] + common, work / "reference.jsonl")

    profile = work / "profile.json"
    samples = work / "samples.csv"
    run(["mpirun", *flags, "-np", 3, a.moe, "profile", "--model", model_dir, "--devices", a.devices, "--out", profile,
         "--token-counts", "1,2,4,8,16,32,64", "--repeats", 3, "--max-experts", 4, "--deadline", 120,
         "--record-latency-samples", samples])
    p = json.load(open(profile))
    model = p["model"]
    expert_bytes = 2 * 4 * model["d_model"] * model["d_ff"]
    even = math.ceil(model["num_moe_layers"] * model["num_experts"] / 2)
    loads = {r["rank"]: r.get("expert_load_us", 0) / 1000 for r in p["ranks"]}
    print(f"profiled load of one expert (ms): {loads}; expert {expert_bytes} bytes; {even} experts per rank "
          "under an even split", flush=True)

    rows = []
    for budget in [int(b) for b in a.budgets.split(",")]:
        memory = str(budget * even // 100 * expert_bytes)
        placed = work / f"placed-{budget}.json"
        text = run([a.moe, "place", "--profile", profile, "--trace", trace, "--out", placed,
                    "--expert-memory", memory, "--baselines", work / f"base-{budget}"])
        print(text, flush=True)
        predicted = predicted_shares(text)
        maps = {"round-robin": work / f"base-{budget}-round-robin.json",
                "unbudgeted": work / f"base-{budget}-unbudgeted.json", "placed": placed}
        for name, path in maps.items():
            row = dict(budget=budget, memory_bytes=int(memory), map=name, predicted_resident=predicted[name])
            dist = ["--devices", a.devices, "--expert-map", path, "--expert-memory", memory]
            answers, ms, log = generate(a.moe, model_dir, ["--input", evaluation] + common + dist +
                                        ["--on-missing-expert", "substitute"], work / "out.jsonl", np=3, flags=flags)
            m = re.search(r"(\d+) of (\d+) routed tokens of rank \d+ had no resident replica", log)
            row["measured_resident"] = 100.0 * (1 - int(m.group(1)) / max(int(m.group(2)), 1))
            row["agreement"] = 100.0 * agreement(reference, answers)
            for t in TASKS:
                row[t] = 100.0 * sum(answers[rid]["text"].strip() == answer_of[rid]
                                     for rid in answers if rid.startswith(t + "-")) / 200 \
                    if answer_of else float("nan")
            row["substitute_ms_per_token"] = ms
            exact, wait_ms, _ = generate(a.moe, model_dir, ["--input", evaluation] + common + dist +
                                         ["--on-missing-expert", "wait"], work / "out.jsonl", np=3, flags=flags)
            if {k: v["output_ids"] for k, v in exact.items()} != {k: v["output_ids"] for k, v in reference.items()}:
                sys.exit(f"FAIL: wait with the {name} map at {budget}% differs from the all-resident run")
            row["wait_ms_per_token"] = wait_ms
            rows.append(row)
            print(row, flush=True)

    routing_rows = routing(a, flags, work, model_dir, evaluation, common, reference, profile, samples, even,
                           expert_bytes) if a.routing else []

    print(f"\nall resident, one process: {base_ms:.3f} ms per token; devices {a.devices}; loads (ms) {loads}")
    print(f"{'budget':>6} {'map':<22} {'pred res%':>9} {'meas res%':>9} {'agree%':>7} "
          + " ".join(f"{t:>7}" for t in TASKS) + f" {'subst ms':>9} {'wait ms':>8}")
    for r in rows:
        print(f"{r['budget']:>5}% {r['map']:<22} {r['predicted_resident']:>9.1f} {r['measured_resident']:>9.1f} "
              f"{r['agreement']:>7.1f} " + " ".join(f"{r[t]:>7.1f}" for t in TASKS)
              + f" {r['substitute_ms_per_token']:>9.3f} {r['wait_ms_per_token']:>8.3f}")
    if routing_rows:
        print("\nrouting over every expert on both expert ranks (wait: ms per token; substitute: resident, agreement)")
        print(f"{'budget':>6} {'policy':<26} {'wait ms':>8} {'loads':>7} {'subst res%':>10} {'agree%':>7}")
        for r in routing_rows:
            print(f"{r['budget']:>5}% {r['policy']:<26} {r['wait_ms_per_token']:>8.3f} {r['loads_in_steps']:>7} "
                  f"{r['measured_resident']:>10.1f} {r['agreement']:>7.1f}")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
