#!/usr/bin/env python3
"""Runs a long `moe generate` job and watches rank 0: its resident memory (VmRSS) and the answers
in OUTPUT.partial, sampled every --every seconds, so that a job of a million prompts can show that
memory and throughput stay flat from start to end. Prints one line per sample, then per tenth of
the job the answers/s and rank 0's RSS, and the RSS growth from the end of the first tenth to the
end (the issue's "flat": within 10 MB).

Usage: watch_job.py --output OUT.jsonl [--every 2] -- COMMAND...
(COMMAND is the whole job, e.g. mpirun -np 3 build/moe generate ... --output OUT.jsonl)
"""
import argparse
import os
import subprocess
import sys
import time


def rank0_pid(root_pid):
    """The moe process that is rank 0 (OMPI_COMM_WORLD_RANK=0, or the only one) under root_pid."""
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if not cmd or not cmd[0].endswith(b"/moe") or b"generate" not in cmd:
            continue
        rank = [e for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")]
        if not rank or rank[0] == b"OMPI_COMM_WORLD_RANK=0":
            return int(pid)
    return None


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def lines_in(path):
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", required=True)
    ap.add_argument("--every", type=float, default=2.0)
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    print("+ " + " ".join(command), flush=True)
    start = time.monotonic()
    job = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    samples = []  # (seconds, answers, rss MB)
    pid = None
    counted = 0
    while job.poll() is None:
        time.sleep(args.every)
        pid = pid or rank0_pid(job.pid)
        rss = rss_mb(pid) if pid else None
        # Lines are counted only from the partial file's growth (the file is renamed at the end).
        n = lines_in(args.output + ".partial")
        counted = n if n is not None else counted
        if rss is not None:
            samples.append((time.monotonic() - start, counted, rss))
            print(f"{samples[-1][0]:8.1f} s  {counted:9d} answers  rank 0 rss {rss:8.1f} MB", flush=True)
    out = job.stdout.read()
    print(out, end="")
    if job.returncode != 0:
        sys.exit(f"the job failed with exit status {job.returncode}")
    total = lines_in(args.output) or 0
    if len(samples) < 10 or total == 0:
        sys.exit("too few samples to judge: run a longer job or sample more often")
    print(f"\n{total} answers in {time.monotonic() - start:.0f} s; per tenth of the job:")
    print("| tenth | answers/s | rank 0 rss MB (end of tenth) |\n|--:|--:|--:|")
    previous_t, previous_n, tenth_rss = 0.0, 0, {}
    for k in range(1, 11):
        goal = total * k / 10
        hit = next((s for s in samples if s[1] >= goal), samples[-1])
        rate = (hit[1] - previous_n) / max(hit[0] - previous_t, 1e-9)
        tenth_rss[k] = hit[2]
        print(f"| {k} | {rate:.0f} | {hit[2]:.1f} |")
        previous_t, previous_n = hit[0], hit[1]
    after = [s[2] for s in samples if s[1] >= total / 10]
    growth = max(after) - tenth_rss[1]
    print(f"rank 0 rss: {tenth_rss[1]:.1f} MB at the end of the first tenth, at most {max(after):.1f} MB after: "
          f"growth {growth:+.1f} MB (flat: within 10 MB: {'yes' if growth <= 10 else 'NO'})")


if __name__ == "__main__":
    main()
