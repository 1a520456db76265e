#!/usr/bin/env python3
"""Tokens/s over the course of a `moe generate` batch job, from its output JSONL: each request's
k-th token is placed at ttft_ms + (k-1) * tpot_ms after the job started (every request arrives at
the start), the run is cut into --bins equal slices, and each slice's rate is printed against the
steady-state rate (the median slice). A job that keeps every rank busy to the end stays within 10%
of it in every slice but the last (which ends with the last token). Also prints the p50/p99 time
per output token. Usage: steady_state.py OUT.jsonl [--bins 10]"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--bins", type=int, default=10)
    a = ap.parse_args()
    times, tpot = [], []
    for line in open(a.output):
        r = json.loads(line)
        n = len(r["output_ids"])
        times += [r["ttft_ms"] + k * r["tpot_ms"] for k in range(n)]
        if n > 1:
            tpot.append(r["tpot_ms"])
    end = max(times)
    width = end / a.bins
    counts = [0] * a.bins
    for t in times:
        counts[min(int(t / width), a.bins - 1)] += 1
    rates = [c / (width / 1e3) for c in counts]
    steady = statistics.median(rates)
    print(f"{len(times)} tokens in {end / 1e3:.1f} s; steady {steady:.1f} tokens/s (median of {a.bins} slices)")
    for i, r in enumerate(rates):
        print(f"  {i * width / 1e3:7.1f}-{(i + 1) * width / 1e3:7.1f} s  {r:8.1f} tokens/s  {100 * (r / steady - 1):+6.1f}%")
    worst = max(abs(r / steady - 1) for r in rates[:-1])
    tpot.sort()
    print(f"largest departure before the last slice: {100 * worst:.1f}%; time per output token p50 "
          f"{tpot[len(tpot) // 2]:.2f} ms, p99 {tpot[min(len(tpot) - 1, int(0.99 * len(tpot)))]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
