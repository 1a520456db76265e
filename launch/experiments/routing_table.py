#!/usr/bin/env python3
"""The placement and routing table of routing_eval.sh (docs/BENCHMARKS.md): every measured row of
`moe bench-routing --csv` beside the simulator's prediction of it (`moe simulate --out`, the same
trace, maps, policies and passes), then the issue's goals checked against the measured numbers.

  routing_table.py --work DIR     (the --work of routing_eval.sh)"""
import argparse
import csv
import os

ROUTING = ("homo", "homo-balanced", "hetero")
NAMED_BASELINES = ("random", "round-robin", "uniform")


def load(path):
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []


def keyed(rows):
    return {(os.path.basename(r["expert_map"]), r["policy"]): r for r in rows}


def pct(x):
    return f"{100 * x:+.1f}%"


def print_rows(setting, measured, simulated, errors):
    sim = keyed(simulated)
    for m in measured:
        key = (os.path.basename(m["expert_map"]), m["policy"])
        mean, p99 = float(m["mean_us"]), float(m["p99_us"])
        vs = ""
        if m["latency_aware_mean_change"]:
            vs = (f"{pct(float(m['latency_aware_mean_change']))} ± {100 * float(m['latency_aware_mean_change_se']):.1f}, "
                  f"{pct(float(m['latency_aware_p99_change']))}")
        predicted = ""
        if key in sim:
            s_mean, s_p99 = float(sim[key]["mean_us"]), float(sim[key]["p99_us"])
            errors.append((setting, key, (s_mean - mean) / mean, (s_p99 - p99) / p99))
            predicted = f"{s_mean / 1e3:.1f} ({pct((s_mean - mean) / mean)}) | {s_p99 / 1e3:.1f} ({pct((s_p99 - p99) / p99)})"
        else:
            predicted = "| "
        policy_us = float(m["policy_us"])
        print(f"| {setting} | {key[0].removesuffix('.json')} | {m['policy']} | {mean / 1e3:.1f} | {p99 / 1e3:.1f} | "
              f"{float(m['tokens_per_s']):.0f} | {float(m['imbalance']):.2f} | {policy_us:.0f} ({100 * policy_us / mean:.2f}%) "
              f"| {vs} | {predicted} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    W = a.work
    errors = []
    print("| setting | expert map | policy | mean ms | p99 ms | tokens/s | imbalance | policy µs (% of layer) "
          "| latency-aware vs this: mean ± s.e., p99 | simulated mean ms (error) | simulated p99 ms (error) |")
    print("|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|")
    routing = {}
    for s in ROUTING:
        routing[s] = load(f"{W}/routing-{s}.csv")
        print_rows(s, routing[s], load(f"{W}/simulated-{s}.csv"), errors)
    placement = load(f"{W}/placement-hetero.csv")
    print_rows("hetero (placement)", placement, load(f"{W}/simulated-placement-hetero.csv"), errors)

    print("\nGoals, on the measured numbers:")
    for s in ROUTING:
        rows = {r["policy"]: r for r in routing[s]}
        if "latency-aware" not in rows:
            continue
        la = rows["latency-aware"]
        named = [rows[p] for p in NAMED_BASELINES if p in rows]
        best_mean = min(named, key=lambda r: float(r["mean_us"]))
        best_p99 = min(named, key=lambda r: float(r["p99_us"]))
        d_mean = float(la["mean_us"]) / float(best_mean["mean_us"]) - 1
        d_p99 = float(la["p99_us"]) / float(best_p99["p99_us"]) - 1
        if s == "hetero":
            goal = "goal ≤ -20% both: " + ("met" if d_mean <= -0.2 and d_p99 <= -0.2 else "NOT met")
        else:
            goal = "goal ≤ +2% mean: " + ("met" if d_mean <= 0.02 else "NOT met")
        line = (f"- {s}: latency-aware {pct(d_mean)} mean against the best of random/round-robin/uniform "
                f"({best_mean['policy']}), {pct(d_p99)} p99 against the best p99 ({best_p99['policy']}); {goal}")
        if "static" in rows:
            line += (f"; against static (each expert's first replica): {pct(float(la['mean_us']) / float(rows['static']['mean_us']) - 1)} mean, "
                     f"{pct(float(la['p99_us']) / float(rows['static']['p99_us']) - 1)} p99")
        print(line)
    by_map = {}
    for r in placement:
        by_map.setdefault(r["policy"], {})[os.path.basename(r["expert_map"])] = float(r["mean_us"])
    for policy, maps in by_map.items():
        for placed in ("placed.json", "placed-sim.json"):
            if placed in maps and "base-round-robin.json" in maps:
                d = maps[placed] / maps["base-round-robin.json"] - 1
                print(f"- placement, hetero, {policy}: {placed.removesuffix('.json')} {pct(d)} mean layer time "
                      f"against round-robin placement; goal ≤ -15%: {'met' if d <= -0.15 else 'NOT met'}")
    if errors:
        mean_abs = sum(abs(e[2]) for e in errors) / len(errors)
        worst = max(errors, key=lambda e: abs(e[2]))
        within = sum(abs(e[2]) <= 0.15 for e in errors)
        p99_abs = sum(abs(e[3]) for e in errors) / len(errors)
        print(f"- simulator: mean |error| of the mean latency {100 * mean_abs:.1f}% over {len(errors)} rows "
              f"({within} within 15%; worst {pct(worst[2])}: {worst[0]}, {worst[1][1]}); p99 mean |error| "
              f"{100 * p99_abs:.1f}%; goal within 15%: {'met' if within == len(errors) else 'NOT met on every row'}")


if __name__ == "__main__":
    main()
