#!/usr/bin/env python3
"""Simulator predictions against measured runs (docs/SIMULATOR.md, "Validation").

  compare.py replay --measured bench.csv --predicted sim.csv [--setting NAME]
      joins `moe bench-routing --csv` with `moe simulate --out` on (expert map, policy)
  compare.py live --chrome trace.json --predicted per_call.csv [--setting NAME] [--steady]
      the coordinator's dispatch→combine time of every sparse-layer call of a `moe generate
      --trace` run against `moe simulate --per-call` on the routing trace of the same run
      (--steady: without the first batch, whose calls also touch the weights for the first time)
  compare.py compute --chrome trace.json --routing routing.jsonl --profile profile.json
      each expert rank's measured compute per call (its "experts L" events) against the sum of
      its experts' profiled curves (round-robin map), over the steady calls: where time goes;
      --speeds-into IN.json OUT.json writes a copy of cluster config IN whose class rankR has speed
      profiled/measured (a diagnostic: the event model with compute as it was measured)

Prints one Markdown table row per comparison: setting, workload, map, policy, calls, measured
and predicted mean and p99 (µs) and the prediction's error, (predicted - measured) / measured."""
import argparse
import csv
import json
import os
import sys


def p99(values):
    v = sorted(values)
    return v[min(len(v) - 1, int(0.99 * len(v)))]


def row(setting, workload, emap, policy, calls, m_mean, p_mean, m_p99, p_p99):
    err = 100 * (p_mean - m_mean) / m_mean
    err99 = 100 * (p_p99 - m_p99) / m_p99
    print(f"| {setting} | {workload} | {emap} | {policy} | {calls} | {m_mean:.0f} | {p_mean:.0f} | {err:+.1f}% "
          f"| {m_p99:.0f} | {p_p99:.0f} | {err99:+.1f}% |")
    return abs(err)


def replay(a):
    measured = {(os.path.basename(r["expert_map"]), r["policy"]): r for r in csv.DictReader(open(a.measured))}
    worst = 0.0
    for r in csv.DictReader(open(a.predicted)):
        key = (os.path.basename(r["expert_map"]), r["policy"])
        if key not in measured:
            continue
        m = measured[key]
        worst = max(worst, row(a.setting, "replay", key[0], key[1], r["calls"], float(m["mean_us"]),
                               float(r["mean_us"]), float(m["p99_us"]), float(r["p99_us"])))
    return worst


def live(a):
    events = [e for e in json.load(open(a.chrome))["traceEvents"] if e.get("ph") == "X" and e.get("pid") == 0]
    events.sort(key=lambda e: e["ts"])
    measured, start = [], None
    for e in events:
        if e["name"].startswith("dispatch L"):
            start = e["ts"]
        elif e["name"].startswith("combine L") and start is not None:
            measured.append(e["ts"] + e["dur"] - start)
            start = None
    rows = list(csv.DictReader(open(a.predicted)))
    predicted = [float(r["latency_us"]) for r in rows]
    if len(measured) != len(predicted):
        sys.exit(f"compare.py: {len(measured)} measured calls but {len(predicted)} predicted")
    first = min(int(r["batch"]) for r in rows)
    keep = [i for i, r in enumerate(rows) if not (a.steady and int(r["batch"]) == first)]
    m, p = [measured[i] for i in keep], [predicted[i] for i in keep]
    per_call = sum(abs(x - y) / x for x, y in zip(m, p)) / len(m)
    err = row(a.setting, "live generate" + (", steady" if a.steady else ""), "round-robin", "static", len(m), sum(m) / len(m), sum(p) / len(p),
              p99(m), p99(p))
    print(f"<!-- {a.setting}: mean per-call |error| {100 * per_call:.1f}% over {len(m)} calls -->")
    return err


def compute(a):
    profile = json.load(open(a.profile))
    curves = {r["rank"]: (r["expert_tokens"], r["expert_median_us"]) for r in profile["ranks"]}

    def at(rank, n):
        xs, ys = curves[rank]
        if n <= 0:
            return 0.0
        i = 1
        while i + 1 < len(xs) and xs[i] < n:
            i += 1
        return max(0.0, ys[i - 1] + (ys[i] - ys[i - 1]) * (n - xs[i - 1]) / (xs[i] - xs[i - 1]))

    events = [e for e in json.load(open(a.chrome))["traceEvents"]
              if e.get("ph") == "X" and e.get("pid", 0) > 0 and e["name"].startswith("experts ")]
    ranks = sorted({e["pid"] for e in events})
    per_rank = {r: sorted((e for e in events if e["pid"] == r), key=lambda e: e["ts"]) for r in ranks}
    records = [json.loads(line) for line in open(a.routing)]
    E = profile["model"]["num_experts"]
    first = min(r["batch"] for r in records)
    speeds = {}
    for rank in ranks:
        meas = pred = 0.0
        for i, rec in enumerate(records):
            if rec["batch"] == first:
                continue
            counts = {}
            for e, k in zip(rec["expert"], rec["kept"]):
                if k and 1 + (rec["layer"] * E + e) % len(ranks) == rank:
                    counts[e] = counts.get(e, 0) + 1
            meas += per_rank[rank][i]["dur"]
            pred += sum(at(rank, n) for n in counts.values())
        speeds[rank] = pred / max(meas, 1e-9)
        print(f"<!-- rank {rank}: measured compute {meas / 1e3:.1f} ms, profiled curves {pred / 1e3:.1f} ms "
              f"({100 * (pred - meas) / max(meas, 1e-9):+.1f}%) over the steady calls -->")
    if a.speeds_into:
        cluster = json.load(open(a.speeds_into[0]))
        for rank, speed in speeds.items():
            cluster["classes"][f"rank{rank}"]["speed"] = round(speed, 4)
        json.dump(cluster, open(a.speeds_into[1], "w"), indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("replay")
    r.add_argument("--measured", required=True)
    r.add_argument("--predicted", required=True)
    r.add_argument("--setting", default="")
    l = sub.add_parser("live")
    l.add_argument("--chrome", required=True)
    l.add_argument("--predicted", required=True)
    l.add_argument("--setting", default="")
    l.add_argument("--steady", action="store_true", help="leave out the first batch (weights touched first)")
    c = sub.add_parser("compute")
    c.add_argument("--chrome", required=True)
    c.add_argument("--routing", required=True)
    c.add_argument("--profile", required=True)
    c.add_argument("--speeds-into", nargs=2, metavar=("IN", "OUT"))
    a = ap.parse_args()
    {"replay": replay, "live": live, "compute": compute}[a.mode](a)


if __name__ == "__main__":
    main()
