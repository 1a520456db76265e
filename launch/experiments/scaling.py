#!/usr/bin/env python3
"""Scaling experiments: runs a grid of `moe generate` jobs through launch/moe-mpirun (ranks,
batch sizes, placements, dispatch policies), repeats each point, and writes

  OUT/scaling.csv       one row per grid point: median and spread of tokens/s over the repeats,
                        sparse-layer latency p50/p99 (from --trace), per-rank imbalance, bytes
  OUT/scaling_runs.csv  one row per run (every repeat)
  OUT/scaling_vs_ranks.png, OUT/scaling_vs_batch.png
                        throughput and layer latency against ranks and batch size, one line per
                        policy; simulator predictions (--simulated) as dashed lines

Placements: "round-robin" puts expert e on expert rank 1 + e mod (ranks-1), one copy (every
policy then chooses the same rank, so only `static` runs); "replicated" puts each expert on two
neighbouring expert ranks (from 3 ranks on), where the policy picks the replica per token.
Ranks that need more cores than the machine has run oversubscribed and unbound (moe-mpirun).

Definitions (per grid point, over its repeats):
  tokens/s          generated tokens / generation wall time, as `moe generate` prints it
  layer latency     one sparse-layer call on the coordinator, from its "dispatch Lk" event's
                    start to its "combine Lk" event's end (dispatch + wait + combine); p50/p99
                    over every call of every repeat
  imbalance         max / mean of the tokens the expert ranks served in one sparse layer,
                    averaged over the sparse layers (1.0 = even; a layer waits for its busiest rank)
  bytes moved       activations sent to the expert ranks and back: 2 x tokens x d_model x 4 B

Simulator hook: --simulated SIM.csv with columns ranks, batch_size, policy, placement,
tokens_per_s_median, layer_p50_us, layer_p99_us (extra columns are ignored) adds those rows to
the plots as dashed lines (and to scaling.csv with source=simulated); ranks may go past what
this machine can run.

--base8: disaggregated serving on a random checkpoint of switch-base-8's whole shape instead (the
tiny model's runs are dominated by noise): `moe generate` at each rank count (the default layout:
one attention rank, the rest expert ranks, micro-batches chosen by the serving model from a
profile measured first), repeated in turns, one thread per rank; writes OUT/base8_speedup.csv and
OUT/base8_speedup.png: the speed-up over -np 1 (median, min-max bars), the machine's ceiling (the
cores the ranks share), and the serving model's predictions (`moe plan`'s fastest layout) for
this machine and for a machine of the same cores with one per rank, up to --predict-ranks.

Progress (done/total, rate, time left) is shown on a terminal only; batch logs stay quiet.
matplotlib is installed on first use if missing (pip, else Debian's python3-matplotlib).
"""
import argparse
import csv
import itertools
import json
import os
import re
import shutil
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "launch"))
from rank_table import rank_rows  # noqa: E402
POLICIES = ("static", "round-robin", "random", "uniform")
POINT_FIELDS = ["source", "model", "ranks", "expert_ranks", "batch_size", "placement", "policy",
                "prompts", "max_new_tokens", "repeats", "oversubscribed", "tokens_per_s_median",
                "tokens_per_s_min", "tokens_per_s_max", "tokens_per_s_spread_pct", "layer_p50_us",
                "layer_p99_us", "layer_calls", "imbalance", "bytes_moved", "wall_s_median"]
RUN_FIELDS = ["ranks", "batch_size", "placement", "policy", "repeat", "tokens_per_s",
              "generated_tokens", "layer_p50_us", "layer_p99_us", "imbalance", "bytes_moved",
              "expert_rank_tokens", "wall_s"]


def csv_list(cast):
    return lambda text: [cast(x) for x in text.split(",") if x]


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def write_prompts(path, count):
    """`count` prompts: the default model's examples, cycled, with unique ids."""
    base = [json.loads(line) for line in open(os.path.join(ROOT, "configs/models/switch-tiny/prompts.jsonl"))]
    with open(path, "w") as f:
        for i in range(count):
            p = dict(base[i % len(base)])
            p["id"] = f"{i}-{p['id']}"
            f.write(json.dumps(p) + "\n")


def replicated_map(path, layers, experts, expert_ranks):
    """Every expert on two neighbouring expert ranks."""
    rows = [{"layer": l, "experts": [[1 + e % expert_ranks, 1 + (e + 1) % expert_ranks]
                                     for e in range(experts)]} for l in range(layers)]
    with open(path, "w") as f:
        json.dump({"layers": rows}, f)


def sparse_layers(config):
    count = 0
    for layers, step in ((config["num_layers"], config["encoder_sparse_step"]),
                         (config["num_decoder_layers"], config["decoder_sparse_step"])):
        count += sum(1 for i in range(layers) if step > 0 and (step == 1 or i % step == 1))
    return count


def layer_latencies_us(trace_path):
    """Coordinator's sparse-layer calls: from each "dispatch Lk" start to the next "combine Lk" end."""
    events = [e for e in json.load(open(trace_path))["traceEvents"] if e.get("ph") == "X" and e.get("pid") == 0]
    events.sort(key=lambda e: e["ts"])
    open_calls, out = {}, []
    for e in events:
        kind, _, layer = e["name"].partition(" ")
        if kind == "dispatch":
            open_calls[layer] = e["ts"]
        elif kind == "combine" and layer in open_calls:
            out.append(e["ts"] + e["dur"] - open_calls.pop(layer))
    return out


def parse_run(stdout, d_model):
    """tokens/s, and from the per-rank table: each expert rank's tokens per sparse layer."""
    m = re.search(r"^generated (\d+) tokens for \d+ prompts in ([0-9.]+) s: ([0-9.]+) tokens/s", stdout, re.M)
    if not m:
        raise RuntimeError("no 'generated ... tokens/s' line in the output")
    expert = [r["tokens_per_layer"] for r in sorted(rank_rows(stdout), key=lambda r: r["rank"]) if r["rank"] != 0]
    ratios = []
    for layer in zip(*expert):
        mean = statistics.mean(layer)
        if mean > 0:
            ratios.append(max(layer) / mean)
    total = sum(sum(t) for t in expert)
    return {"generated_tokens": int(m[1]), "tokens_per_s": float(m[3]),
            "imbalance": statistics.mean(ratios) if ratios else 1.0,
            "bytes_moved": 2 * total * d_model * 4,
            "expert_rank_tokens": " ".join(str(sum(t)) for t in expert)}


class Progress:
    """done/total, rate and time left on a terminal; nothing in a batch log."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.time()
        self.tty = sys.stderr.isatty()

    def step(self, what):
        self.done += 1
        if not self.tty:
            return
        elapsed = time.time() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0
        left = (self.total - self.done) / rate if rate else 0
        sys.stderr.write(f"\r[{self.done}/{self.total}] {rate:.2f} runs/s, {left:4.0f} s left  {what:<50.50}")
        sys.stderr.flush()
        if self.done == self.total:
            sys.stderr.write("\n")


def grid(args, expert_layers):
    points = []
    for ranks, batch in itertools.product(args.ranks, args.batch_sizes):
        for placement in args.placements:
            if placement == "replicated" and ranks < 3:
                continue  # one expert rank: nothing to replicate
            for policy in (args.policies if placement == "replicated" else ["static"]):
                points.append({"ranks": ranks, "batch_size": batch, "placement": placement, "policy": policy})
    return points


def run_point(point, args, work, model_cfg, prompts, expert_map_for):
    cores = len(os.sched_getaffinity(0))
    ranks = point["ranks"]
    run_cfg = {"model": args.model, "ranks": ["cpu:1"] * ranks, "oversubscribe": ranks > cores,
               "policy": point["policy"],
               "workload": {"input": prompts, "batch_size": point["batch_size"],
                            "max_new_tokens": args.max_new_tokens, "deadline": 120}}
    if point["placement"] == "replicated":
        run_cfg["expert_map"] = expert_map_for(ranks)
    if args.mca:
        run_cfg["mca"] = dict(m.split("=", 1) for m in args.mca)
    cfg_path = os.path.join(work, "run.json")
    with open(cfg_path, "w") as f:
        json.dump(run_cfg, f)
    trace = os.path.join(work, "trace.json")
    cmd = [os.path.join(ROOT, "launch/moe-mpirun"), cfg_path, "--moe", args.moe, "--trace", trace, "--", "--quiet"]
    start = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.time() - start
    if p.returncode != 0:
        sys.exit(f"scaling: run failed ({shlex.join(cmd)}):\n{p.stderr.strip()[-2000:]}")
    result = parse_run(p.stdout, model_cfg["d_model"])
    lat = layer_latencies_us(trace)
    result.update(layer_us=lat, wall_s=wall, oversubscribed=ranks > cores, command=p.stderr.strip())
    return result


def summarise(point, runs, args, model_name):
    tps = [r["tokens_per_s"] for r in runs]
    lat = [x for r in runs for x in r["layer_us"]]
    med = statistics.median(tps)
    return {"source": "measured", "model": model_name, "ranks": point["ranks"],
            "expert_ranks": point["ranks"] - 1, "batch_size": point["batch_size"],
            "placement": point["placement"], "policy": point["policy"], "prompts": args.prompts,
            "max_new_tokens": args.max_new_tokens, "repeats": len(runs),
            "oversubscribed": int(runs[0]["oversubscribed"]),
            "tokens_per_s_median": round(med, 1), "tokens_per_s_min": round(min(tps), 1),
            "tokens_per_s_max": round(max(tps), 1),
            "tokens_per_s_spread_pct": round(100 * (max(tps) - min(tps)) / med, 1) if med else 0,
            "layer_p50_us": round(percentile(lat, 50), 1) if lat else "",
            "layer_p99_us": round(percentile(lat, 99), 1) if lat else "",
            "layer_calls": len(lat),
            "imbalance": round(statistics.median(r["imbalance"] for r in runs), 3),
            "bytes_moved": int(statistics.median(r["bytes_moved"] for r in runs)),
            "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 3)}


def read_simulated(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            missing = [k for k in ("ranks", "batch_size", "policy", "placement", "tokens_per_s_median") if k not in r]
            if missing:
                sys.exit(f"scaling: {path}: missing column(s) {', '.join(missing)}")
            row = {k: "" for k in POINT_FIELDS}
            row.update({k: v for k, v in r.items() if k in POINT_FIELDS})
            row["source"] = "simulated"
            rows.append(row)
    return rows


def have_matplotlib():
    import importlib.util
    importlib.invalidate_caches()
    return importlib.util.find_spec("matplotlib") is not None


def ensure_matplotlib():
    if have_matplotlib():
        return True
    print("+ pip install matplotlib", file=sys.stderr)
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"]).returncode != 0:
        apt = ["apt-get", "install", "-y", "-qq", "python3-matplotlib"]
        if os.geteuid() != 0:
            apt = ["sudo"] + apt
        print("+ " + " ".join(apt), file=sys.stderr)
        subprocess.run(apt, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
            sys.path.append("/usr/lib/python3/dist-packages")
    if not have_matplotlib():
        print("scaling: matplotlib could not be installed; CSV written, no plots", file=sys.stderr)
        return False
    return True


def line_label(row):
    return row["policy"] if row["placement"] == "replicated" else f"{row['policy']} (no replicas)"


def plot(rows, out_dir):
    if not ensure_matplotlib():
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.MaxNLocator below)

    def num(v):
        return float(v) if v not in ("", None) else None

    labels = sorted({line_label(r) for r in rows}, key=lambda s: (s.endswith("replicas)"), s))
    colours = {label: plt.get_cmap("tab10")(i) for i, label in enumerate(labels)}
    measured = [r for r in rows if r["source"] == "measured"]
    batches = sorted({int(r["batch_size"]) for r in measured})
    max_ranks = max(int(r["ranks"]) for r in measured)
    written = []
    for name, xkey, fixed_key, fixed, xlabel in (
            ("scaling_vs_ranks.png", "ranks", "batch_size", batches[-1], "ranks (1 coordinator + expert ranks)"),
            ("scaling_vs_batch.png", "batch_size", "ranks", max_ranks, "batch size (prompts)")):
        fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
        for source, style in (("measured", "-"), ("simulated", "--")):
            for label in labels:
                sel = sorted((r for r in rows if r["source"] == source and line_label(r) == label
                              and int(float(r[fixed_key])) == fixed), key=lambda r: float(r[xkey]))
                if not sel:
                    continue
                xs = [float(r[xkey]) for r in sel]
                tps = [num(r["tokens_per_s_median"]) for r in sel]
                name_sfx = "" if source == "measured" else " (simulated)"
                if source == "measured":
                    lo = [t - num(r["tokens_per_s_min"]) for t, r in zip(tps, sel)]
                    hi = [num(r["tokens_per_s_max"]) - t for t, r in zip(tps, sel)]
                    ax_t.errorbar(xs, tps, yerr=[lo, hi], fmt="o" + style, capsize=3, color=colours[label],
                                  label=label + name_sfx)
                else:
                    ax_t.plot(xs, tps, style, marker="x", color=colours[label], label=label + name_sfx)
                for key, marker, alpha in (("layer_p50_us", "o", 1.0), ("layer_p99_us", "^", 0.45)):
                    pts = [(x, num(r.get(key))) for x, r in zip(xs, sel) if num(r.get(key)) is not None]
                    if pts:
                        ax_l.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=marker, alpha=alpha,
                                  color=colours[label],
                                  label=f"{label} {key[6:9]}{name_sfx}")
        ax_t.set_title(f"throughput ({fixed_key.replace('_', ' ')} {fixed})")
        ax_t.set_ylabel("generated tokens/s (median, min-max bars)")
        ax_l.set_title(f"sparse-layer latency ({fixed_key.replace('_', ' ')} {fixed})")
        ax_l.set_ylabel("µs per layer call (p50 ●, p99 ▲)")
        for ax in (ax_t, ax_l):
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if xkey == "batch_size":
                ax.set_xscale("log", base=2)
            else:
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax_l.set_yscale("log")
        ax_t.legend(fontsize=7)
        ax_l.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def markdown_table(rows):
    batch = max(int(r["batch_size"]) for r in rows)
    lines = ["| ranks | placement | policy | tokens/s median (min–max) | layer p50 / p99 µs | imbalance | bytes moved |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for r in sorted((r for r in rows if int(r["batch_size"]) == batch),
                    key=lambda r: (int(r["ranks"]), r["placement"] != "round-robin", r["policy"])):
        lines.append(f"| {r['ranks']} | {r['placement']} | {r['policy']} | {r['tokens_per_s_median']} "
                     f"({r['tokens_per_s_min']}–{r['tokens_per_s_max']}) | {r['layer_p50_us']} / {r['layer_p99_us']} "
                     f"| {r['imbalance']} | {r['bytes_moved']} |")
    return f"Batch size {batch}:\n\n" + "\n".join(lines)


def plan_prediction(args, profile, ranks, cores, requests, extra=()):
    """(alone, fastest) tokens/s and the fastest layout's flags from `moe plan`."""
    cmd = [args.moe, "plan", "--profile", profile, "--ranks", ranks, "--cores", cores,
           "--batch-size", args.batch_sizes[-1], "--requests", requests, "--input-tokens", "13-41",
           "--new-tokens", args.max_new_tokens, *extra]
    out = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout
    alone = float(re.search(r"^1 \(alone\) +0 +1 +([0-9.]+)", out, re.M)[1])
    chosen = re.search(r"^chosen: mpirun -np \d+ moe generate (.*) --batch-size \d+ \(predicted ([0-9.]+)", out, re.M)
    return alone, float(chosen[2]), chosen[1]


def base8_scaling(args):
    sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
    from distributed_bench import measure_profile, mpi, say, write_prompts
    work = args.work
    os.makedirs(work, exist_ok=True)
    args.model = os.path.join(work, "switch-base-8-shape")
    if not os.path.exists(os.path.join(args.model, "model.safetensors")):
        cmd = [sys.executable, os.path.join(ROOT, "launch/experiments/make_wide_model.py"), "--base8",
               "--out", args.model]
        say(cmd)
        subprocess.run(cmd, check=True)
    batch, cores = args.batch_sizes[-1], len(os.sched_getaffinity(0))
    args.weights = "f32"
    profile = args.profile or measure_profile(args, [batch])
    prompts = os.path.join(work, f"prompts-scaling-{batch}.jsonl")
    write_prompts(prompts, args.prompts)
    rates = {r: [] for r in args.ranks}
    load_before = os.getloadavg()[0]
    for rep in range(args.repeats):
        for ranks in args.ranks:
            cmd = mpi(ranks, [args.moe, "generate", "--model", args.model, "--input", prompts, "--output",
                              os.path.join(work, "scaling-out.jsonl"), "--batch-size", batch,
                              "--max-new-tokens", args.max_new_tokens, "--quiet", "--profile", profile])
            say(cmd)
            out = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout
            rates[ranks].append(float(re.search(r"^generated \d+ tokens .*: ([0-9.]+) tokens/s", out, re.M)[1]))
            print(f"[scaling] repeat {rep + 1} -np {ranks}: {rates[ranks][-1]:.1f} tokens/s", flush=True)
    base = statistics.median(rates[args.ranks[0]])
    rows = []
    for ranks in args.ranks:
        med = statistics.median(rates[ranks])
        rows.append({"source": "measured", "ranks": ranks, "cores": cores, "speedup": med / base,
                     "speedup_min": min(rates[ranks]) / base, "speedup_max": max(rates[ranks]) / base,
                     "tokens_per_s": med, "layout": "default", "ceiling": min(ranks, cores)})
    # The measured layout (one attention rank), then the fastest split the model finds.
    for source, rank_counts, shared, extra in (
            ("model, 1 attention rank, this machine", range(2, max(args.ranks) + 1), cores, ["--attention-ranks", "1"]),
            ("model's best split, this machine", range(2, max(args.ranks) + 1), cores, []),
            ("model's best split, a core per rank", range(2, args.predict_ranks + 1), 0, [])):
        for ranks in rank_counts:
            # The measured runs' prompts where one attention rank serves them, else two batches each.
            requests = args.prompts if extra else max(args.prompts, 2 * batch * (ranks - 1))
            alone, best, layout = plan_prediction(args, profile, ranks, shared, requests, extra)
            rows.append({"source": source, "ranks": ranks, "cores": shared or ranks, "speedup": best / alone,
                         "speedup_min": "", "speedup_max": "", "tokens_per_s": best, "layout": layout,
                         "ceiling": min(ranks, shared) if shared else ranks})
    fields = ["source", "ranks", "cores", "speedup", "speedup_min", "speedup_max", "tokens_per_s", "layout",
              "ceiling"]
    csv_path = os.path.join(args.out, "base8_speedup.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    print(f"base8: batch {batch}, {args.prompts} prompts x {args.max_new_tokens} new tokens, {cores} cores, load "
          f"{load_before:.2f} before and {os.getloadavg()[0]:.2f} after, {args.repeats} repeats; profile {profile}")
    print("| source | ranks | speed-up over -np 1 | min-max | tokens/s | layout | ceiling |\n|---|---|---|---|---|---|---|")
    for r in rows:
        spread = f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}" if r["speedup_min"] != "" else ""
        print(f"| {r['source']} | {r['ranks']} | {r['speedup']:.2f}x | {spread} | {r['tokens_per_s']:.1f} | "
              f"{r['layout']} | {r['ceiling']}x |")
    if ensure_matplotlib():
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        measured = [r for r in rows if r["source"] == "measured"]
        ax.errorbar([r["ranks"] for r in measured], [r["speedup"] for r in measured],
                    yerr=[[r["speedup"] - r["speedup_min"] for r in measured],
                          [r["speedup_max"] - r["speedup"] for r in measured]],
                    fmt="o-", capsize=3, label=f"measured ({cores} cores)")
        for source, style in (("model, 1 attention rank, this machine", "x--"),
                              ("model's best split, this machine", "s--"),
                              ("model's best split, a core per rank", "+:")):
            sel = [r for r in rows if r["source"] == source]
            ax.plot([1] + [r["ranks"] for r in sel], [1] + [r["speedup"] for r in sel], style, label=source)
        xs = list(range(1, args.predict_ranks + 1))
        ax.plot(xs, [min(x, cores) for x in xs], "k-", alpha=0.3, label=f"ceiling, {cores} cores")
        ax.plot(xs, xs, "k:", alpha=0.3, label="ceiling, a core per rank")
        ax.set_xlabel("ranks (1 attention rank first, then the model's split)")
        ax.set_ylabel("tokens/s over -np 1")
        ax.set_title(f"switch-base-8 shape, batch {batch} per attention rank")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        png = os.path.join(args.out, "base8_speedup.png")
        fig.savefig(png, dpi=110)
        print(f"wrote {os.path.relpath(png, ROOT)}", file=sys.stderr)
    print(f"wrote {os.path.relpath(csv_path, ROOT)}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=csv_list(int), default=[2, 3, 4, 5], help="rank counts (default 2,3,4,5)")
    ap.add_argument("--batch-sizes", type=csv_list(int), default=[1, 4, 16, 64], help="default 1,4,16,64")
    ap.add_argument("--policies", type=csv_list(str), default=list(POLICIES), help="for replicated placements")
    ap.add_argument("--placements", type=csv_list(str), default=["round-robin", "replicated"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=64, help="prompts per run (default 64)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--model", default="configs/models/switch-tiny")
    ap.add_argument("--moe", default=os.path.join(ROOT, "build/moe"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/scaling"), help="folder for the CSVs and PNGs")
    ap.add_argument("--simulated", help="CSV of simulator predictions, drawn as dashed lines")
    ap.add_argument("--mca", action="append", default=[], metavar="PARAM=VALUE",
                    help="an Open MPI MCA parameter for every run (repeatable)")
    ap.add_argument("--plot-only", action="store_true", help="redraw from OUT/scaling.csv without running")
    ap.add_argument("--base8", action="store_true",
                    help="disaggregated serving on the switch-base-8 shape (defaults: ranks 1,2,3, batch 64, "
                         "128 prompts x 32 new tokens, 3 repeats)")
    ap.add_argument("--work", default="/tmp/moe-dist-bench", help="--base8: checkpoint and run files")
    ap.add_argument("--profile", help="--base8: a profile with serving curves (default: measured first)")
    ap.add_argument("--predict-ranks", type=int, default=16, help="--base8: the model's predictions up to this")
    args = ap.parse_args()
    if args.base8:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        defaults = {"--ranks": [1, 2, 3], "--batch-sizes": [64], "--prompts": 128, "--max-new-tokens": 32,
                    "--repeats": 3}
        for flag, value in defaults.items():
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
        os.makedirs(args.out, exist_ok=True)
        return base8_scaling(args)
    for p in args.placements:
        if p not in ("round-robin", "replicated"):
            ap.error(f"unknown placement {p}")
    for p in args.policies:
        if p not in POLICIES:
            ap.error(f"unknown policy {p}")
    os.makedirs(args.out, exist_ok=True)
    points_csv = os.path.join(args.out, "scaling.csv")
    model_dir = args.model if os.path.isabs(args.model) else os.path.join(ROOT, args.model)
    model_cfg = json.load(open(os.path.join(model_dir, "config.json")))
    print(f"+ {' '.join(sys.argv)}", file=sys.stderr)

    if args.plot_only:
        rows = [r for r in csv.DictReader(open(points_csv)) if r["source"] == "measured"]
    else:
        layers = sparse_layers(model_cfg)
        points = grid(args, layers)
        progress = Progress(len(points) * args.repeats)
        rows, run_rows = [], []
        started, load_before = time.time(), os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="moe-scaling-") as work:
            prompts = os.path.join(work, "prompts.jsonl")
            write_prompts(prompts, args.prompts)
            # A copy of the binary: a rebuild while the grid runs must not change or break it.
            args.moe = shutil.copy2(args.moe, os.path.join(work, "moe"))

            def expert_map_for(ranks):
                path = os.path.join(work, f"replicated-{ranks}.json")
                if not os.path.exists(path):
                    replicated_map(path, layers, model_cfg["num_experts"], ranks - 1)
                return path

            first_command = None
            for point in points:
                runs = []
                for rep in range(args.repeats):
                    r = run_point(point, args, work, model_cfg, prompts, expert_map_for)
                    first_command = first_command or r["command"]
                    runs.append(r)
                    run_rows.append({**point, "repeat": rep, **{k: r[k] for k in RUN_FIELDS if k in r},
                                     "layer_p50_us": round(percentile(r["layer_us"], 50), 1),
                                     "layer_p99_us": round(percentile(r["layer_us"], 99), 1),
                                     "wall_s": round(r["wall_s"], 3), "tokens_per_s": r["tokens_per_s"]})
                    progress.step(f"ranks {point['ranks']} batch {point['batch_size']} {point['placement']} {point['policy']}")
                rows.append(summarise(point, runs, args, os.path.basename(model_dir.rstrip("/"))))
        with open(os.path.join(args.out, "scaling_runs.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=RUN_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(run_rows)
        print(f"{len(run_rows)} runs of {len(points)} points in {time.time() - started:.0f} s on "
              f"{len(os.sched_getaffinity(0))} cores (1-min load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after); first command:\n{first_command}", file=sys.stderr)

    simulated = read_simulated(args.simulated) if args.simulated else []
    with open(points_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=POINT_FIELDS)
        w.writeheader()
        w.writerows(rows + simulated)
    written = plot(rows + simulated, args.out)
    print(markdown_table(rows))
    for path in [points_csv] + written:
        print(f"wrote {os.path.relpath(path, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
