#!/usr/bin/env python3
"""Writes N prompts of the default model's three tasks (reverse / sort / next, in turn) as JSON
lines {"id", "text"}, drawn by the same generator that trained it (tiny_tasks.py) with a seed of
their own, for workloads larger than the 8 committed prompts."""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_tasks import TASKS, make_example  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    print(f"+ make_prompts.py --count {a.count} --seed {a.seed} --out {a.out}", file=sys.stderr)
    rng = random.Random(a.seed)
    with open(a.out, "w") as f:
        for i in range(a.count):
            task = TASKS[i % len(TASKS)]
            prompt, _ = make_example(rng, task)
            f.write(json.dumps({"id": f"{task}-{i}", "text": prompt}) + "\n")


if __name__ == "__main__":
    main()
