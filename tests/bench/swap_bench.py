#!/usr/bin/env python3
"""Experts under a memory budget (--expert-memory): quality, latency and resident memory of
SwapMoE's dynamic committee against the paper's baselines, in one run.

Configurations at each budget (a share of the experts' memory): all resident (the original
model), random keep and magnitude keep (fixed committees; a token of a non-resident expert goes to
the best resident one), on-demand load (exact: a missed expert is loaded for its step), the
dynamic committee (importance-driven background swaps, substitution for the rest; committees
spread evenly over the layers), and the planned dynamic committee (committee sizes and first
members from `moe plan-memory` on a routing trace of the all-resident run, the budget counting one
expert in flight).

1. Quality: the trained default model (configs/models/switch-tiny) on its 600 held-out prompts
   (200 per task), in runs of the same task ("ordered", the temporal locality the paper relies
   on) and shuffled ("random"): exact-match accuracy per task, and greedy-token agreement with the
   all-resident run (positions equal / positions of the all-resident answer).
2. Latency and memory at scale: a random checkpoint of switch-base-8's shape (--wide; made by
   launch/experiments/make_wide_model.py --base8), random prompts: milliseconds per generated
   token, the process's peak resident memory (ru_maxrss, load included), that less the peak of a
   run with no expert resident (the experts' share, against the budget), and agreement.
3. The planner's budget pairs (wide checkpoint, batch 8, on-demand loads so that latency depends
   on the plan): for each memory budget and a latency budget (LATENCY_FACTORS times the
   all-resident time per token), the plan's prediction against the measured run.
Parts 1 and 2 at batch 1 (the paper's edge setting) and batch 8, one thread.

Usage: swap_bench.py [--moe build/moe] [--wide DIR] [--budgets 75,50,25] [--csv FILE]
                     [--plot DIR] [--skip-wide] [--wide-prompts N]
Prints one table per part and, with --plot, quality-vs-memory and latency-vs-memory PNGs
(matplotlib). Every command is printed with a leading '+'.
"""
import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "launch" / "experiments"))
from tiny_tasks import TASKS, heldout_examples  # noqa: E402

TINY = ROOT / "configs" / "models" / "switch-tiny"
MiB = 1 << 20
# Part 3's latency budgets, times the all-resident time per token, by memory budget: each memory
# budget with a latency budget that its plan can meet (on-demand loads cost more as memory shrinks).
LATENCY_FACTORS = {75: 4.0, 50: 7.0, 25: 9.0}
CONFIGS = (  # name, --committee, --on-missing-expert
    ("random keep", "random", "substitute"),
    ("magnitude keep", "magnitude", "substitute"),
    ("on-demand load", "magnitude", "on-demand"),
    ("dynamic committee", "dynamic", "substitute"),
    ("planned dynamic", "dynamic", "substitute"),  # with --memory-plan
)


def run(moe, args, work):
    """moe generate; returns (answers by id, ms per generated token, peak resident MiB, summary)."""
    out = work / "out.jsonl"
    cmd = [str(moe), "generate", "--output", str(out), "--quiet", "--threads", "1"] + [str(a) for a in args]
    print("+ " + " ".join(cmd), flush=True)
    with open(work / "stdout", "w") as so:
        p = subprocess.Popen(cmd, stdout=so, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    log = open(work / "stdout").read()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}):\n{log}")
    m = re.search(r"generated (\d+) tokens for \d+ prompts in ([\d.]+) s", log)
    tokens, seconds = int(m.group(1)), float(m.group(2))
    answers = {}
    for line in open(out):
        r = json.loads(line)
        answers[r["id"]] = r
    budget = re.search(r"expert memory: .*", log)
    return answers, 1000.0 * seconds / max(tokens, 1), usage.ru_maxrss / 1024, budget.group(0) if budget else ""


def make_plan(moe, model, trace, budget, work, extra=()):
    """moe plan-memory for `budget`% of the experts; returns (plan path, its stdout) or (None, why)."""
    out = work / f"plan-{budget}.json"
    cmd = [str(moe), "plan-memory", "--model", str(model), "--trace", str(trace), "--memory", f"{budget}%",
           "--out", str(out)] + [str(a) for a in extra]
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    return (out if p.returncode == 0 else None), p.stdout + p.stderr


RANDOM_SEEDS = (1, 2, 3, 4, 5)  # random keep is a random baseline: the mean of several draws


def mean_rows(rows_of_seeds):
    """One row: the mean of each number over the seeds' rows; accuracy's min-max kept for the table."""
    out = dict(rows_of_seeds[0])
    for k, v in out.items():
        if isinstance(v, float) and k not in ("budget",):
            out[k] = sum(r[k] for r in rows_of_seeds) / len(rows_of_seeds)
    out["seeds"] = len(rows_of_seeds)
    return out


def config_flags(name, committee, policy, budget, plan):
    if name == "planned dynamic":
        return ["--memory-plan", plan, "--committee", committee, "--on-missing-expert", policy]
    return ["--expert-memory", f"{budget}%", "--committee", committee, "--on-missing-expert", policy]


def agreement(reference, answers):
    """Share of the reference's generated positions where the answer has the same id."""
    equal = total = 0
    for rid, ref in reference.items():
        a, b = ref["output_ids"], answers[rid]["output_ids"]
        total += len(a)
        equal += sum(1 for i, t in enumerate(a) if i < len(b) and b[i] == t)
    return equal / max(total, 1)


def quality(moe, budgets, work, rows):
    examples = heldout_examples()
    answer_of = {f"{task}-{i}": answer for i, (task, _, answer) in enumerate(examples)}
    orders = {"ordered": list(enumerate(examples))}
    shuffled = list(enumerate(examples))
    random.Random(5).shuffle(shuffled)
    orders["random"] = shuffled
    for order, items in orders.items():
        prompts = work / f"heldout-{order}.jsonl"
        with open(prompts, "w") as f:
            for i, (task, prompt, _) in items:
                f.write(json.dumps({"id": f"{task}-{i}", "text": prompt}) + "\n")
        for batch in (1, 8):
            common = ["--model", TINY, "--input", prompts, "--batch-size", batch, "--max-new-tokens", 16]

            def accuracy(answers):
                return {t: 100.0 * sum(answers[rid]["text"].strip() == answer_of[rid]
                                       for rid in answers if rid.startswith(t + "-")) / 200
                        for t in TASKS}
            trace = work / f"trace-{order}-{batch}.jsonl"
            reference, ms, rss, _ = run(moe, common + ["--record-routing", trace], work)
            rows.append(dict(part="quality", order=order, batch=batch, budget=100, config="all resident",
                             ms_per_token=ms, peak_rss_mib=rss, agreement=1.0, **accuracy(reference)))
            for budget in budgets:
                plan, _ = make_plan(moe, TINY, trace, budget, work)
                for name, committee, policy in CONFIGS:
                    draws = []
                    for seed in (RANDOM_SEEDS if committee == "random" else (1,)):
                        answers, ms, rss, line = run(moe, common + config_flags(name, committee, policy, budget, plan)
                                                     + ["--seed", seed], work)
                        draws.append(dict(part="quality", order=order, batch=batch, budget=budget, config=name,
                                          ms_per_token=ms, peak_rss_mib=rss, agreement=agreement(reference, answers),
                                          residency=line, **accuracy(answers)))
                    rows.append(mean_rows(draws))


def scale(moe, wide, budgets, work, rows, count, only_planner=False):
    prompts = work / "wide.jsonl"
    rng = random.Random(3)
    with open(prompts, "w") as f:
        for i in range(count):
            f.write(json.dumps({"id": i, "input_ids": [rng.randrange(2, 32000) for _ in range(rng.randint(12, 40))] + [1]}) + "\n")
    for batch in ((8,) if only_planner else (1, 8)):
        common = ["--model", wide, "--input", prompts, "--batch-size", batch, "--max-new-tokens", 16]
        trace = work / f"trace-wide-{batch}.jsonl"
        run(moe, common, work)  # the page cache warm for every configuration alike
        reference, ms, rss, _ = run(moe, common + ["--record-routing", trace], work)
        _, _, no_experts_rss, _ = run(moe, common + ["--expert-memory", "0", "--on-missing-expert", "skip"], work)
        rows.append(dict(part="scale", order="random", batch=batch, budget=100, config="all resident",
                         ms_per_token=ms, peak_rss_mib=rss, agreement=1.0, experts_rss_mib=rss - no_experts_rss))
        for budget in ([] if only_planner else budgets):
            plan, _ = make_plan(moe, wide, trace, budget, work)
            for name, committee, policy in CONFIGS:
                answers, ms, rss, line = run(moe, common + config_flags(name, committee, policy, budget, plan), work)
                rows.append(dict(part="scale", order="random", batch=batch, budget=budget, config=name,
                                 ms_per_token=ms, peak_rss_mib=rss, agreement=agreement(reference, answers),
                                 experts_rss_mib=rss - no_experts_rss, residency=line))
        if batch == 8:
            planner_pairs(moe, wide, common, trace, budgets, ms, no_experts_rss, work, rows)


def planner_pairs(moe, wide, common, trace, budgets, base_ms, no_experts_rss, work, rows):
    """Part 3: the plan's prediction against the measured run, for each (memory, latency) pair."""
    expert_mib = 2 * 768 * 3072 * 4 / MiB
    for budget in budgets:
        latency = round(LATENCY_FACTORS.get(budget, 5.0) * base_ms, 3)
        plan, log = make_plan(moe, wide, trace, budget, work, ["--on-missing-expert", "on-demand", "--latency-ms",
                                                               latency, "--base-ms-per-token", round(base_ms, 4)])
        row = dict(part="planner", budget=budget, latency_budget_ms=latency, plan=log.strip().replace("\n", " / "))
        if plan is not None:
            predicted = json.load(open(plan))
            _, ms, rss, line = run(moe, common + ["--memory-plan", plan, "--committee", "magnitude",
                                                  "--on-missing-expert", "on-demand"], work)
            memory_budget_mib = int(budget / 100 * 96) * expert_mib
            row.update(predicted_ms=predicted["ms_per_token"], measured_ms=ms,
                       predicted_memory_mib=predicted["memory_bytes"] / MiB, memory_budget_mib=memory_budget_mib,
                       measured_experts_rss_mib=rss - no_experts_rss,
                       met=ms <= latency and rss - no_experts_rss <= memory_budget_mib + 16)
        rows.append(row)


def print_tables(rows):
    planner = [r for r in rows if r["part"] == "planner"]
    if planner:
        print("\nplanner (memory, latency) pairs, wide checkpoint, batch 8, on-demand loads:")
        print("| memory budget | latency budget ms/token | plan | predicted ms | measured ms | predicted MiB | "
              "measured experts' RSS MiB | both met |")
        print("|---|---|---|---|---|---|---|---|")
        for r in planner:
            if "measured_ms" not in r:
                print(f"| {r['budget']}% | {r['latency_budget_ms']} | {r['plan']} | | | | | no plan |")
                continue
            print(f"| {r['budget']}% ({r['memory_budget_mib']:.0f} MiB) | {r['latency_budget_ms']} | {r['plan']} | "
                  f"{r['predicted_ms']:.2f} | {r['measured_ms']:.2f} | {r['predicted_memory_mib']:.0f} | "
                  f"{r['measured_experts_rss_mib']:.0f} | {'yes' if r['met'] else 'NO'} |")
    for part in ("quality", "scale"):
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        print(f"\n{part}:")
        head = "| order | batch | budget | configuration | " + (" | ".join(TASKS) + " | " if part == "quality" else "")
        print(head + "agreement | ms per token | vs all resident | peak RSS MiB | experts' RSS MiB |")
        print("|" + "---|" * (head.count("|") + 4))
        base = {}
        for r in sel:
            key = (r["order"], r["batch"])
            if r["config"] == "all resident":
                base[key] = r["ms_per_token"]
            acc = " | ".join(f"{r[t]:.1f}" for t in TASKS) + " | " if part == "quality" else ""
            print(f"| {r['order']} | {r['batch']} | {r['budget']}% | {r['config']} | {acc}{100 * r['agreement']:.1f}% | "
                  f"{r['ms_per_token']:.2f} | {r['ms_per_token'] / base[key]:.2f}x | {r['peak_rss_mib']:.0f} | "
                  f"{r.get('experts_rss_mib', float('nan')):.0f} |")


def plot(rows, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    for part, metric, label in (("quality", "agreement", "token agreement with all resident"),
                                ("scale", "ms_per_token", "ms per generated token")):
        sel = [r for r in rows if r["part"] == part and r["order"] in ("ordered", "random")]
        if not sel:
            continue
        keys = sorted({(r["order"], r["batch"]) for r in sel})
        fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
        for ax, (order, batch) in zip(axes[0], keys):
            base = next(r for r in sel if r["order"] == order and r["batch"] == batch and r["config"] == "all resident")
            for name, _, _ in CONFIGS:
                pts = sorted([(100, base[metric])] + [(r["budget"], r[metric]) for r in sel if r["order"] == order
                                                      and r["batch"] == batch and r["config"] == name])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            ax.set_title(f"{part}: {order}, batch {batch}")
            ax.set_xlabel("expert memory (% of all experts)")
            ax.set_ylabel(label)
            ax.invert_xaxis()
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{part}-vs-memory.png"
        fig.savefig(path, dpi=110)
        print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", default=str(ROOT / "build" / "moe"))
    ap.add_argument("--wide", default="/tmp/moe-dist-bench/switch-base-8-shape")
    ap.add_argument("--budgets", default="75,50,25")
    ap.add_argument("--csv")
    ap.add_argument("--plot", help="directory for the PNGs")
    ap.add_argument("--skip-wide", action="store_true")
    ap.add_argument("--wide-prompts", type=int, default=8)
    ap.add_argument("--only-planner", action="store_true", help="part 3 alone (with what it needs of part 2)")
    a = ap.parse_args()
    budgets = [int(b) for b in a.budgets.split(",")]
    work = Path(tempfile.mkdtemp(prefix="swap-bench-"))
    rows = []
    if not a.only_planner:
        quality(a.moe, budgets, work, rows)
    if not a.skip_wide:
        if not (Path(a.wide) / "config.json").exists():
            print(f"+ python3 launch/experiments/make_wide_model.py --base8 --out {a.wide}")
            subprocess.run([sys.executable, str(ROOT / "launch/experiments/make_wide_model.py"), "--base8",
                            "--out", a.wide], check=True)
        scale(a.moe, a.wide, budgets, work, rows, a.wide_prompts, a.only_planner)
    print(f"(random keep in part 1: the mean of {len(RANDOM_SEEDS)} random committees, seeds {RANDOM_SEEDS})")
    print_tables(rows)
    if a.csv:
        keys = sorted({k for r in rows for k in r})
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    if a.plot:
        plot(rows, Path(a.plot))


if __name__ == "__main__":
    main()
