#!/usr/bin/env python3
"""The cost of distribution: `moe generate` alone (-np 1) vs under mpirun (-np 3: a coordinator and
two expert ranks), on the random switch-base-8-shaped checkpoint (built and cached by
e2e_vs_hf.py under the same --work), batch 8, same prompts, same --threads per rank.

Prints three results:
 1. tokens/s of -np 1 and -np 3 (median of --repeats, alternating np1 / np3 per repeat so that
    machine noise hits both alike; each process's first batch is a warm-up and is not counted),
    and np3 / np1.
 2. From --trace-repeats more -np 3 runs with --trace (median over them): of the coordinator's time in the sparse layers
    (dispatch + wait + combine, trace events "dispatch L<k>", "wait L<k>", "combine L<k>" of
    rank 0), the share spent in dispatch + combine (goal <= 10%), encoder and decoder apart; and
    the expert lag: from rank 0's dispatch start to the expert rank's "experts L<k>" start.
 3. The idle coordinator's CPU use: during each traced run, rank 0's CPU time is sampled every
    --sample-ms from /proc/<pid>/task/*/schedstat (nanoseconds on CPU, every thread) and
    /proc/<pid>/stat (utime + stime, clock ticks). The trace's timestamps are relative to its
    first event, so the trace is placed on the sampler's clock at the offset where rank 0 burns
    the least CPU inside its wait intervals (a grid search). Then: CPU seconds between the samples
    that fall inside the waits / those seconds (goal < 5% of a core); the same outside the waits is
    printed as a check (rank 0 computes then). Whole-run CPU / wall of every rank too.

Every command run is printed with a leading '+'. Needs numpy.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import e2e_vs_hf  # noqa: E402  (the checkpoint builder and the prompts)

TICKS = os.sysconf("SC_CLK_TCK")


def say(cmd):
    print("+ " + shlex.join(str(c) for c in cmd), flush=True)


def mpirun_flags():
    out = subprocess.run(["bash", "-c", f"source {ROOT}/launch/mpirun_flags.sh; "
                          "printf '%s\\n' \"${MPIRUN_FLAGS[@]}\""], check=True, capture_output=True, text=True)
    return out.stdout.split()


def generate_cmd(args, np_, inp, out, extra=()):
    cmd = [args.moe, "generate", "--model", args.model, "--input", inp, "--output", out,
           "--max-new-tokens", args.max_new_tokens, "--batch-size", args.batch, "--threads", args.threads,
           "--quiet", *extra]
    return ["mpirun", *mpirun_flags(), *shlex.split(args.mpirun_extra), "-np", np_, *cmd] if np_ > 1 else cmd


def rate_from_output(out: Path, warm: int, batch: int):
    """Tokens/s over the measured batches: the per-batch encode + decode times moe wrote."""
    lines = [json.loads(line) for line in open(out)][warm:]
    seconds = sum((b[0]["batch_encode_ms"] + b[0]["batch_decode_ms"]) / 1e3
                  for b in (lines[i:i + batch] for i in range(0, len(lines), batch)))
    return sum(len(r["output_ids"]) for r in lines) / seconds, [r["output_ids"] for r in lines]


class CpuSampler(threading.Thread):
    """Samples every moe rank's CPU time (schedstat ns over all threads; utime+stime ticks)."""

    def __init__(self, root_pid, period_s):
        super().__init__(daemon=True)
        self.root_pid, self.period_s = root_pid, period_s
        self.samples = {}  # rank -> list of (monotonic s, cpu ns, ticks)
        self.pids = {}
        self.stop = threading.Event()

    def descends(self, pid):
        while pid > 1:
            if pid == self.root_pid:
                return True
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        return False

    def find_ranks(self):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in self.pids.values():
                continue
            try:
                if b"moe" not in open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")[0]:
                    continue
                if not self.descends(int(entry)):  # not another user's mpirun
                    continue
                env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            for kv in env:
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    self.pids[int(kv.split(b"=")[1])] = int(entry)

    def run(self):
        while not self.stop.is_set():
            if len(self.pids) < 3:
                self.find_ranks()
            now = time.monotonic()
            for rank, pid in self.pids.items():
                try:
                    ns = 0
                    for tid in os.listdir(f"/proc/{pid}/task"):
                        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                            ns += int(f.read().split()[0])
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
                except (OSError, ValueError, IndexError):
                    continue
                self.samples.setdefault(rank, []).append((now, ns, ticks))
            time.sleep(self.period_s)


def sparse_layer_shares(trace, encoder_layers):
    """Rank 0's dispatch / wait / combine per sparse-layer call (µs), encoder and decoder apart."""
    calls = {}
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e["pid"] != 0:
            continue
        kind, _, layer = e["name"].partition(" L")
        if kind in ("dispatch", "wait", "combine"):
            calls.setdefault((int(layer), kind), []).append(e)
    rows = {}
    for part, keep in (("encoder", lambda l: l < encoder_layers), ("decoder", lambda l: l >= encoder_layers),
                       ("all", lambda l: True)):
        tot = {k: sum(e["dur"] for (l, kk), evs in calls.items() if kk == k and keep(l) for e in evs)
               for k in ("dispatch", "wait", "combine")}
        n = sum(len(evs) for (l, kk), evs in calls.items() if kk == "wait" and keep(l))
        rows[part] = (n, tot["dispatch"], tot["wait"], tot["combine"])
    return rows


def expert_lag(trace):
    """p50 and p90 (µs) over decoder+encoder calls of: expert rank's compute start − rank 0's dispatch start."""
    ev = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    starts = [e["ts"] for e in ev if e["pid"] == 0 and e["name"].startswith("dispatch ")]
    lags = []
    for rank in sorted({e["pid"] for e in ev if e["pid"] > 0}):
        mine = np.array(sorted(e["ts"] for e in ev if e["pid"] == rank and e["name"].startswith("experts ")))
        for t0 in starts:
            k = np.searchsorted(mine, t0)
            if k < len(mine):
                lags.append(mine[k] - t0)
    return (np.percentile(lags, 50), np.percentile(lags, 90)) if lags else (0.0, 0.0)


def wait_cpu(trace, samples):
    """Rank 0's CPU inside its wait intervals / their duration.

    Alignment: the trace's origin is placed on the sampler's clock at the offset that minimises
    rank 0's (interpolated) CPU inside the waits; interpolation blurs each edge symmetrically, so
    the location is right, but the amount is biased up by about a sample period per wait. The amount
    is therefore measured only between the samples that fall inside each wait (no interpolation).
    """
    ev = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e["pid"] == 0]
    waits = np.array([(e["ts"], e["ts"] + e["dur"]) for e in ev if e["name"].startswith("wait ")]) / 1e6
    span = max(e["ts"] + e["dur"] for e in ev) / 1e6
    t = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples]) / 1e9
    offsets = np.arange(t[0], t[-1] - span, 0.0002)
    if len(offsets) == 0 or len(waits) == 0:
        return None
    best, best_cpu = None, None
    for chunk in np.array_split(offsets, max(1, len(offsets) // 2000)):
        inside = (np.interp(chunk[:, None] + waits[None, :, 1], t, cpu) -
                  np.interp(chunk[:, None] + waits[None, :, 0], t, cpu)).sum(axis=1)
        i = int(np.argmin(inside))
        if best_cpu is None or inside[i] < best_cpu:
            best, best_cpu = chunk[i], inside[i]

    def contained(intervals):
        """CPU seconds and seconds between the first and last sample inside each interval."""
        i = np.searchsorted(t, best + intervals[:, 0], side="left")
        j = np.searchsorted(t, best + intervals[:, 1], side="right") - 1
        ok = j > i
        return (cpu[j[ok]] - cpu[i[ok]]).sum(), (t[j[ok]] - t[i[ok]]).sum()

    # The busy intervals: rank 0's trace span minus its waits.
    edges = np.concatenate([[0.0], waits.ravel(), [span]]).reshape(-1, 2)
    wait_cpu_s, wait_seen_s = contained(waits)
    busy_cpu_s, busy_seen_s = contained(edges)
    return dict(wait_s=(waits[:, 1] - waits[:, 0]).sum(), span_s=span, calls=len(waits),
                wait_cpu_s=wait_cpu_s, wait_seen_s=wait_seen_s, busy_cpu_s=busy_cpu_s,
                busy_seen_s=busy_seen_s, period_s=np.median(np.diff(t)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moe", default=str(ROOT / "build" / "moe"), help="the moe binary (default: build/moe)")
    p.add_argument("--work", default="/tmp/moe-e2e-bench", help="cache of the random checkpoint and run files")
    p.add_argument("--np", type=int, default=3, help="ranks of the distributed run (default 3)")
    p.add_argument("--threads", type=int, default=1, help="--threads per rank, both runs (default 1)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--prompts", type=int, default=16, help="measured prompts per run (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="default 32")
    p.add_argument("--repeats", type=int, default=3, help="measured repeats (median); plus one warm-up")
    p.add_argument("--mpirun-extra", default="", help="more mpirun flags, e.g. '--mca btl_vader_eager_limit 65536'")
    p.add_argument("--trace-repeats", type=int, default=3, help="traced runs (default 3)")
    p.add_argument("--sample-ms", type=float, default=2.0, help="CPU sampling period of the traced run")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.model = work / "switch-base-8-random"
    if not (args.model / ".complete").exists():
        cmd = [sys.executable, HERE / "e2e_vs_hf.py", "--build-only", "--work", work]
        say(cmd)
        subprocess.run([str(c) for c in cmd], check=True)
    prompts = e2e_vs_hf.prompts_for("switch-base-8", args.prompts, args.model)
    warm = prompts[:args.batch]
    inp = work / "dist.in.jsonl"
    e2e_vs_hf.write_jsonl(inp, warm + prompts)
    print(f"[dist] nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")

    rates = {1: [], args.np: []}
    ids = {}
    for rep in range(args.repeats + 1):
        for np_ in (1, args.np):
            out = work / f"dist.np{np_}.r{rep}.out.jsonl"
            cmd = generate_cmd(args, np_, inp, out)
            say(cmd)
            subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
            rate, ids[np_] = rate_from_output(out, len(warm), args.batch)
            print(f"[dist] {'warm-up' if rep == 0 else f'repeat {rep}'} -np {np_}: {rate:.1f} tok/s", flush=True)
            if rep > 0:
                rates[np_].append(rate)

    # The traced runs, each with every rank's CPU sampled.
    enc_layers = json.load(open(args.model / "config.json"))["num_sparse_encoder_layers"]
    traced = []
    for rep in range(1, args.trace_repeats + 1):
        trace_path, out = work / f"dist.trace.r{rep}.json", work / f"dist.traced.r{rep}.out.jsonl"
        cmd = generate_cmd(args, args.np, inp, out, ("--trace", trace_path))
        say(cmd)
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        sampler = CpuSampler(proc.pid, args.sample_ms / 1e3)
        sampler.start()
        table = proc.communicate()[0]
        sampler.stop.set()
        sampler.join()
        if proc.returncode:
            sys.exit(f"traced run failed ({proc.returncode})")
        trace = json.load(open(trace_path))
        traced.append(dict(rate=rate_from_output(out, len(warm), args.batch)[0],
                           shares=sparse_layer_shares(trace, enc_layers), lag=expert_lag(trace),
                           idle=wait_cpu(trace, sampler.samples.get(0, [])), samples=sampler.samples,
                           table=table[table.find("rank  host"):], load=os.getloadavg()[0]))
        print(f"[dist] traced run {rep}: {traced[-1]['rate']:.1f} tok/s", flush=True)

    n1, nn = statistics.median(rates[1]), statistics.median(rates[args.np])
    print(f"\n## -np 1 vs -np {args.np}: batch {args.batch}, {args.prompts} prompts x max_new_tokens "
          f"{args.max_new_tokens}, --threads {args.threads} per rank, median of {args.repeats}")
    print(f"| run | tokens/s | repeats |\n|---|---|---|")
    print(f"| -np 1 | {n1:.1f} | {[round(x, 1) for x in rates[1]]} |")
    print(f"| -np {args.np} | {nn:.1f} | {[round(x, 1) for x in rates[args.np]]} |")
    print(f"np{args.np} / np1 = {nn / n1:.2f}; same generated ids: {ids[1] == ids[args.np]}")

    print(f"\n## coordinator time in the sparse layers, per traced -np {args.np} run "
          f"(rank 0's trace events; expert lag: from rank 0's dispatch start to the expert rank's compute start)")
    print("| run | tok/s | load | part | calls | dispatch us/call | wait us/call | combine us/call "
          "| (dispatch+combine)/all | expert lag p50 / p90 us |")
    print("|" + "---|" * 10)
    for rep, r in enumerate(traced, 1):
        for part, (n, d, w, c) in r["shares"].items():
            lag = f"{r['lag'][0]:.0f} / {r['lag'][1]:.0f}" if part == "decoder" else ""
            print(f"| {rep} | {r['rate']:.1f} | {r['load']:.1f} | {part} | {n} | {d / max(n, 1):.0f} | "
                  f"{w / max(n, 1):.0f} | {c / max(n, 1):.0f} | {100 * (d + c) / (d + w + c):.1f}% | {lag} |")
    share = statistics.median(100 * (d + c) / (d + w + c) for r in traced for d, w, c in [r["shares"]["all"][1:]])
    print(f"median over runs, all sparse layers: (dispatch+combine)/all = {share:.1f}% (goal <= 10%)")

    print(f"\n## rank 0 while waiting for the expert ranks (CPU sampled every ~{args.sample_ms} ms)")
    print("| run | waits | wait s | CPU in waits (% of a core) | CPU outside waits (check) "
          "| CPU / wall, rank 0 / 1 / 2 ... |")
    print("|---|---|---|---|---|---|")
    idle_pct = []
    for rep, r in enumerate(traced, 1):
        whole = []
        for rank in sorted(r["samples"]):
            smp = r["samples"][rank]
            whole.append(f"{(smp[-1][1] - smp[0][1]) / 1e9 / (smp[-1][0] - smp[0][0]):.2f}")
        i = r["idle"]
        if not i:
            continue
        idle_pct.append(100 * i["wait_cpu_s"] / i["wait_seen_s"])
        print(f"| {rep} | {i['calls']} | {i['wait_s']:.2f} | {idle_pct[-1]:.1f}% | "
              f"{100 * i['busy_cpu_s'] / i['busy_seen_s']:.0f}% | {' / '.join(whole)} |")
    if idle_pct:
        print(f"median: rank 0 uses {statistics.median(idle_pct):.1f}% of a core while it waits (goal < 5%)")
    print("\nper-rank table of the last traced run:\n" + traced[-1]["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
