#!/usr/bin/env python3
"""Does distribution pay? `moe generate` alone (-np 1) against distributed runs under mpirun:
attention and expert ranks, with and without ping-pong micro-batches, and co-located ranks, on a random checkpoint of
switch-base-8's whole shape (launch/experiments/make_wide_model.py --base8, built once under
--work), same prompts, one thread per rank.

For each batch size, the layouts (default: -np 1; -np 2 = 1 attention + 1 expert rank with one
micro-batch, i.e. no ping-pong; -np 2 with the default split; -np 3 = 1 + 2; four processes, two
attention ranks with half the batch each and two expert ranks; -np 2 --colocate, two ranks that
each attend to half the batch and serve half the experts) run in turns, repeat
after repeat, so that machine noise hits all alike. Tokens/s is what `moe generate` reports
(serving only, model loading excluded). Prints per batch size the median tokens/s of each layout,
its spread (min-max), the ratio to -np 1 and to the machine's ceiling (the cores the ranks
share: 2x on 2 cores), whether every run generated the same ids as -np 1, and, from one traced
run per layout, the attention rank's dispatch + combine share of its sparse-layer calls, and where
a split loses against its ceiling: the compute of all its ranks against -np 1's (the work a split
adds) and the share of its ranks' time spent waiting (from the per-rank table). Before the
runs it prints the memory's read bandwidth on one thread and on one thread per core at once: ranks
that stream their weights at the same time share it. --weights runs every layout in bf16 or int8.

The serving model: before the runs, `moe profile` measures the serving curves (-np 2,
--serving-rows up to the largest batch) and the contention of two expert ranks (-np 3), and every
run gets that profile: a layout that leaves --micro-batches open has the model choose it, and each
run prints the model's prediction beside its measurement; the table gives the median predicted
tokens/s and its error (--no-model: runs without a profile).

Needs numpy and safetensors (pip) to build the checkpoint. Every command run is printed.
"""

import argparse
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "launch"))
from mpirun_flags import mpirun_flags  # noqa: E402
from rank_table import rank_rows  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_bandwidth import probe_bandwidth  # noqa: E402

# label, ranks, extra `moe generate` arguments
LAYOUTS = {
    "np1": (1, []),
    "np2-no-pingpong": (2, ["--micro-batches", "1"]),
    "np2": (2, []),
    "np3": (3, []),
    "np3-2x1": (3, ["--attention-ranks", "2"]),  # two attention ranks, one expert rank
    # Four processes on two cores: two attention ranks with half the batch each and two expert
    # ranks, one micro-batch. The ranks take turns in step (attention, then experts), so each core
    # holds one busy rank at a time, and each expert rank gets both attention ranks' rows in one
    # visit: no weight is read twice a step (expert parallelism beside data-parallel attention).
    "np4-2x2-half": (4, ["--attention-ranks", "2", "--micro-batches", "1"]),
    # The same without oversubscription: two processes, each attending to half the batch and
    # holding half the experts, serving the other's rows while its own wait (--colocate).
    "np2-colocated": (2, ["--colocate"]),
}
# Layouts whose --batch-size (per attention rank) is the batch divided by this, so that every
# layout has the same number of sequences in flight.
BATCH_DIVISOR = {"np4-2x2-half": 2, "np2-colocated": 2}
DEFAULT_LAYOUTS = ["np1", "np2-no-pingpong", "np2", "np3", "np4-2x2-half", "np2-colocated"]


def say(cmd):
    print("+ " + shlex.join(str(c) for c in cmd), flush=True)


MEAN_PROMPT_TOKENS = 27  # write_prompts' lengths: 12 to 40 ids and eos


def write_prompts(path, count):
    rng = random.Random(1234)  # random ids of random length: the weights are random too
    with open(path, "w") as f:
        for i in range(count):
            ids = [rng.randrange(3, 32128) for _ in range(rng.randint(12, 40))] + [1]
            f.write(json.dumps({"id": i, "input_ids": ids}) + "\n")


def mpi(ranks, cmd):
    return ["mpirun", *mpirun_flags(), "-np", ranks, *cmd] if ranks > 1 else cmd


def measure_profile(args, batch_sizes):
    """Serving curves at -np 2 (one expert rank: its compute undisturbed), merged with the
    contention of two expert ranks at -np 3. Returns the profile's path. The curves are timed on
    prompts of the runs' mean length and over as many decode steps as the runs make: attention
    over the caches grows with both (at 16 tokens and 8 steps the attention rank's side came out
    about a fifth below what a batch-64 run measured)."""
    work = Path(args.work)
    rows = sorted({1, 2, 4, 8, *[b for b in batch_sizes], *[b // 2 for b in batch_sizes]})
    weights = ["--weights", args.weights] if args.weights != "f32" else []
    common = [args.moe, "profile", "--model", args.model, "--token-counts", "1,2,4,8,16,32,64",
              "--repeats", "3", *weights]
    contention = work / f"profile-contention-{args.weights}.json"
    path = work / f"profile-serving-{args.weights}.json"
    serving = ["--serving-rows", ",".join(map(str, rows)), "--serving-input-tokens", MEAN_PROMPT_TOKENS,
               "--serving-steps", args.max_new_tokens, "--merge", contention]
    for ranks, extra, out in [(3, ["--contention", "2"], contention), (2, serving, path)]:
        cmd = mpi(ranks, [*common, *extra, "--out", out])
        say(cmd)
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
    return path


def run(args, layout, batch, prompts, out, trace=None):
    """tokens/s, the ids, the serving model's prediction (None without one), and the ranks' compute
    and wait seconds, summed."""
    ranks, extra = LAYOUTS[layout]
    per_rank = batch // BATCH_DIVISOR.get(layout, 1)
    cmd = [args.moe, "generate", "--model", args.model, "--input", prompts, "--output", out,
           "--max-new-tokens", args.max_new_tokens, "--batch-size", per_rank, "--quiet", *extra]
    if args.weights != "f32":
        cmd += ["--weights", args.weights]
    if args.profile:
        cmd += ["--profile", args.profile]
    if trace:
        cmd += ["--trace", trace]
    cmd = mpi(ranks, cmd)
    say(cmd)
    text = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"^generated \d+ tokens .*: ([0-9.]+) tokens/s", text, re.M)[1])
    predicted = None
    for line in text.splitlines():
        if line.startswith("serving model: predicted "):
            predicted = float(line.split()[3])
        if line.startswith("micro-batches: ") and "chosen by the serving model" in line:
            print(f"[dist] {layout}: {line}", flush=True)
    ids = [json.loads(line)["output_ids"] for line in open(out)]
    rows = rank_rows(text)
    compute = sum(r["compute_s"] for r in rows)
    wait = sum(r["wait_s"] for r in rows)
    return rate, ids, predicted, (compute, wait)


def exchange_share(trace_path):
    """Rank 0's (dispatch + combine) / (dispatch + wait + combine) over its expert exchanges."""
    tot = {"dispatch": 0.0, "wait": 0.0, "combine": 0.0}
    for e in json.load(open(trace_path))["traceEvents"]:
        if e.get("ph") == "X" and e["pid"] == 0:
            kind = e["name"].split(" ")[0]
            if kind in tot:
                tot[kind] += e["dur"]
    spent = sum(tot.values())
    return (tot["dispatch"] + tot["combine"]) / spent if spent else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moe", default=str(ROOT / "build" / "moe"), help="the moe binary (default: build/moe)")
    p.add_argument("--work", default="/tmp/moe-dist-bench", help="cache of the checkpoint and run files")
    p.add_argument("--batches", default="64,16,8", help="batch sizes (default 64,16,8)")
    p.add_argument("--prompts-per-batch", type=int, default=2, help="prompts = this x batch (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--layouts", default=",".join(DEFAULT_LAYOUTS), help=f"of {', '.join(LAYOUTS)}")
    p.add_argument("--repeats", type=int, default=3, help="measured repeats (median, spread)")
    p.add_argument("--weights", default="f32", choices=["f32", "bf16", "int8"],
                   help="weight format of every rank in every layout (default f32)")
    p.add_argument("--no-model", action="store_true", help="no serving-model profile and predictions")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.model = work / "switch-base-8-shape"
    if not (args.model / "model.safetensors").exists():
        cmd = [sys.executable, ROOT / "launch/experiments/make_wide_model.py", "--base8", "--out", args.model]
        say(cmd)
        subprocess.run([str(c) for c in cmd], check=True)
    layouts = args.layouts.split(",")
    cores = os.cpu_count()
    print(f"[dist] nproc {cores}, load average {os.getloadavg()[0]:.2f}, weights {args.weights}", flush=True)
    bandwidth = probe_bandwidth(args.moe)
    one, every = bandwidth[1], bandwidth.get(cores, bandwidth[1])
    # Ranks that stream weights at once share the memory: where every rank is bound by reading its
    # weights, the ceiling is this ratio, not the core count.
    print(f"[dist] read bandwidth: one thread {one:.1f} GB/s, one per core {every:.1f} GB/s "
          f"({every / one:.2f}x)", flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    args.profile = None if args.no_model else measure_profile(args, batches)
    for batch in batches:
        prompts = work / f"prompts-{batch}.jsonl"
        write_prompts(prompts, args.prompts_per_batch * batch)
        rates = {l: [] for l in layouts}
        predicted = {l: [] for l in layouts}
        same = {l: True for l in layouts}
        work_s = {l: [] for l in layouts}  # per repeat: (compute, wait) over the ranks
        reference = None
        for rep in range(args.repeats):
            for layout in layouts:
                rate, ids, model, spent = run(args, layout, batch, prompts, work / f"out-{layout}.jsonl")
                rates[layout].append(rate)
                work_s[layout].append(spent)
                if model is not None:
                    predicted[layout].append(model)
                reference = reference if reference is not None else ids
                same[layout] = same[layout] and ids == reference
                print(f"[dist] batch {batch} repeat {rep + 1} {layout}: {rate:.1f} tok/s", flush=True)
        shares = {}
        for l in layouts:
            if LAYOUTS[l][0] > 1:
                trace = work / f"trace-{l}-{batch}.json"
                run(args, l, batch, prompts, work / "traced.jsonl", trace)
                shares[l] = exchange_share(trace)
        base = statistics.median(rates[layouts[0]])
        # Where a split loses against its ceiling: more work than one rank (each micro-batch
        # re-reads the weights its products are bound by) and time its ranks spend waiting.
        base_work = statistics.median(c for c, _ in work_s[layouts[0]])
        print(f"\n## batch {batch}: {args.prompts_per_batch * batch} prompts x {args.max_new_tokens} new tokens, "
              f"1 thread per rank, {cores} cores, median of {args.repeats} (load {os.getloadavg()[0]:.2f})")
        print(f"| layout | tokens/s | min-max | vs {layouts[0]} | of the {min(cores, 2)}x ceiling "
              "| same ids | dispatch+combine | compute vs " + layouts[0] + " | ranks waiting "
              "| model tokens/s | model error |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for l in layouts:
            med = statistics.median(rates[l])
            ceiling = min(LAYOUTS[l][0], cores)
            share = f"{100 * shares[l]:.1f}%" if l in shares else ""
            model = statistics.median(predicted[l]) if predicted[l] else None
            model_text = f"{model:.1f} | {100 * (model / med - 1):+.1f}%" if model else " | "
            compute = statistics.median(c for c, _ in work_s[l])
            waiting = statistics.median(w / (c + w) if c + w else 0.0 for c, w in work_s[l])
            print(f"| {l} | {med:.1f} | {min(rates[l]):.1f}-{max(rates[l]):.1f} | {med / base:.2f}x | "
                  f"{100 * med / base / ceiling:.0f}% | {same[l]} | {share} | "
                  f"{compute / base_work:.2f}x | {100 * waiting:.0f}% | {model_text} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
