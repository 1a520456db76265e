#!/usr/bin/env python3
"""Experts under a memory budget (--expert-memory): quality, latency and resident memory of
SwapMoE's dynamic committee against the paper's baselines, in one run.

Configurations at each budget (a share of the experts' memory): all resident (the original
model), random keep and magnitude keep (fixed committees; a token of a non-resident expert goes to
the best resident one), on-demand load (exact: a missed expert is loaded for its step), and the
dynamic committee (importance-driven background swaps, substitution for the rest).

1. Quality: the trained default model (configs/models/switch-tiny) on its 600 held-out prompts
   (200 per task), in runs of the same task ("ordered", the temporal locality the paper relies
   on) and shuffled ("random"): exact-match accuracy per task, and greedy-token agreement with the
   all-resident run (positions equal / positions of the all-resident answer).
2. Latency and memory at scale: a random checkpoint of switch-base-8's shape (--wide; made by
   launch/experiments/make_wide_model.py --base8), random prompts: milliseconds per generated
   token, the process's peak resident memory (ru_maxrss, load included) and agreement.
Both at batch 1 (the paper's edge setting) and batch 8, one thread.

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
CONFIGS = (  # name, --committee, --on-missing-expert
    ("random keep", "random", "substitute"),
    ("magnitude keep", "magnitude", "substitute"),
    ("on-demand load", "magnitude", "on-demand"),
    ("dynamic committee", "dynamic", "substitute"),
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
            reference, ms, rss, _ = run(moe, common, work)
            rows.append(dict(part="quality", order=order, batch=batch, budget=100, config="all resident",
                             ms_per_token=ms, peak_rss_mib=rss, agreement=1.0, **accuracy(reference)))
            for budget in budgets:
                for name, committee, policy in CONFIGS:
                    answers, ms, rss, line = run(moe, common + ["--expert-memory", f"{budget}%", "--committee",
                                                                committee, "--on-missing-expert", policy], work)
                    rows.append(dict(part="quality", order=order, batch=batch, budget=budget, config=name,
                                     ms_per_token=ms, peak_rss_mib=rss, agreement=agreement(reference, answers),
                                     residency=line, **accuracy(answers)))


def scale(moe, wide, budgets, work, rows, count):
    prompts = work / "wide.jsonl"
    rng = random.Random(3)
    with open(prompts, "w") as f:
        for i in range(count):
            f.write(json.dumps({"id": i, "input_ids": [rng.randrange(2, 32000) for _ in range(rng.randint(12, 40))] + [1]}) + "\n")
    for batch in (1, 8):
        common = ["--model", wide, "--input", prompts, "--batch-size", batch, "--max-new-tokens", 16]
        run(moe, common, work)  # the page cache warm for every configuration alike
        reference, ms, rss, _ = run(moe, common, work)
        rows.append(dict(part="scale", order="random", batch=batch, budget=100, config="all resident",
                         ms_per_token=ms, peak_rss_mib=rss, agreement=1.0))
        for budget in budgets:
            for name, committee, policy in CONFIGS:
                answers, ms, rss, line = run(moe, common + ["--expert-memory", f"{budget}%", "--committee",
                                                            committee, "--on-missing-expert", policy], work)
                rows.append(dict(part="scale", order="random", batch=batch, budget=budget, config=name,
                                 ms_per_token=ms, peak_rss_mib=rss, agreement=agreement(reference, answers),
                                 residency=line))


def print_tables(rows):
    for part in ("quality", "scale"):
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        print(f"\n{part}:")
        head = "| order | batch | budget | configuration | " + (" | ".join(TASKS) + " | " if part == "quality" else "")
        print(head + "agreement | ms per token | vs all resident | peak RSS MiB |")
        print("|" + "---|" * (head.count("|") + 3))
        base = {}
        for r in sel:
            key = (r["order"], r["batch"])
            if r["config"] == "all resident":
                base[key] = r["ms_per_token"]
            acc = " | ".join(f"{r[t]:.1f}" for t in TASKS) + " | " if part == "quality" else ""
            print(f"| {r['order']} | {r['batch']} | {r['budget']}% | {r['config']} | {acc}{100 * r['agreement']:.1f}% | "
                  f"{r['ms_per_token']:.2f} | {r['ms_per_token'] / base[key]:.2f}x | {r['peak_rss_mib']:.0f} |")


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
    a = ap.parse_args()
    budgets = [int(b) for b in a.budgets.split(",")]
    work = Path(tempfile.mkdtemp(prefix="swap-bench-"))
    rows = []
    quality(a.moe, budgets, work, rows)
    if not a.skip_wide:
        if not (Path(a.wide) / "config.json").exists():
            print(f"+ python3 launch/experiments/make_wide_model.py --base8 --out {a.wide}")
            subprocess.run([sys.executable, str(ROOT / "launch/experiments/make_wide_model.py"), "--base8",
                            "--out", a.wide], check=True)
        scale(a.moe, a.wide, budgets, work, rows, a.wide_prompts)
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
