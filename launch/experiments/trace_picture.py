#!/usr/bin/env python3
"""Draws a window of a `moe generate --trace` timeline as a PNG: one row per micro-batch lane of
each attention rank (its compute between a combine and the next dispatch, and its waits) and one
per expert rank (its expert and dense FFN calls), so the overlap of ping-pong micro-batches can be
seen. Needs matplotlib (pip).
Usage: trace_picture.py TRACE.json OUT.png [--start-ms T] [--window-ms W] [--title TEXT]"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--start-ms", type=float, default=None, help="window start (default: the middle)")
    ap.add_argument("--window-ms", type=float, default=200.0)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = [e for e in json.load(open(a.trace))["traceEvents"] if e.get("ph") == "X"]
    end = max(e["ts"] + e["dur"] for e in events) / 1e3
    start = end / 2 if a.start_ms is None else a.start_ms
    stop = start + a.window_ms
    rows = {}  # (pid, tid) -> list of (begin ms, length ms, colour)
    since = {}  # attention lane -> end of its last combine
    for e in sorted(events, key=lambda e: e["ts"]):
        t0, t1 = e["ts"] / 1e3, (e["ts"] + e["dur"]) / 1e3
        key, kind = (e["pid"], e.get("tid", 0)), e["name"].split(" ")[0]
        if kind == "combine":
            since[key] = t1
        elif kind == "dispatch" and key in since:
            rows.setdefault(key, []).append((since.pop(key), t0 - 0, "tab:blue"))
        elif kind == "wait":
            rows.setdefault(key, []).append((t0, t1, "lightgrey"))
        elif kind == "experts":
            dense = e["name"].endswith("L-1")
            rows.setdefault(key, []).append((t0, t1, "tab:green" if dense else "tab:orange"))
    keys = sorted(rows, key=lambda k: (k[0], k[1]))
    fig, ax = plt.subplots(figsize=(12, 0.5 + 0.45 * len(keys)))
    for y, key in enumerate(keys):
        bars = [(max(b, start), min(t, stop) - max(b, start), c) for b, t, c in rows[key] if t > start and b < stop]
        ax.broken_barh([(b, w) for b, w, _ in bars], (y - 0.4, 0.8), facecolors=[c for _, _, c in bars])
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([f"rank {p}" + (f" lane {t}" if any(k[0] == p and k[1] > 0 for k in keys) else "")
                        for p, t in keys])
    ax.invert_yaxis()
    ax.set_xlim(start, stop)
    ax.set_xlabel("ms since the trace began (blue: attention-side compute, grey: waiting for experts, "
                  "orange: experts, green: dense FFN)")
    ax.set_title(a.title or a.trace)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
