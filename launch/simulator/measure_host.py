#!/usr/bin/env python3
"""Measures the host constants of the simulator's poll and copy model on this machine and prints
them as JSON: nap_slack_us (how late a sleep of 10..500 µs wakes, median over naps: the kernel's
timer slack and wake-up), yield_us (64 sched_yield calls, the yielding phase of
runtime/deadline.hpp's poll_until) and coordinator_copy_gbytes_per_s (a 64 MiB copy
between buffers already in memory), and where a cgroup CPU controller is writable cfs_tick_us (the
scheduler tick on which a CPU quota is found used up: a spinning child under a 0.4-core quota
stalls on tick multiples, so the largest candidate tick on whose multiples the stalls' starts
cluster, their phases within it agreeing to a resultant length above 0.9, is the host's). With --contention-from PROFILE it adds the contention that
`moe profile --contention K` measured (ranks sharing a host's memory system, and on a VM its
cores, slow each other down; paired timings of each rank alone and K at once, per token count,
with the ranks on different experts and on the same ones).
With --patch CLUSTER.json it writes them into that config's "poll", copy and node fields (and
--cores into every node) instead."""
import argparse
import cmath
import json
import os
import statistics
import time

PERIOD_US, QUOTA_US = 5000, 2000  # runtime/cpu/cpu_quota.hpp's period, 0.4 cores


def quota_cgroup():
    """A new cgroup with the 0.4-core quota, or None where no CPU controller is writable."""
    name = f"moe-tick-{os.getpid()}"
    if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):  # cgroup v1
        d, settings = f"/sys/fs/cgroup/cpu/{name}", {"cpu.cfs_period_us": PERIOD_US, "cpu.cfs_quota_us": QUOTA_US}
    elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # cgroup v2
        d, settings = f"/sys/fs/cgroup/{name}", {"cpu.max": f"{QUOTA_US} {PERIOD_US}"}
    else:
        return None
    try:
        os.mkdir(d)
    except OSError:
        return None
    try:
        for f, v in settings.items():
            with open(f"{d}/{f}", "w") as out:
                out.write(str(v))
    except OSError:  # e.g. cgroup v2 without +cpu in the parent's subtree_control
        os.rmdir(d)
        return None
    return d


def stall_starts(cgroup, spin_s=0.4):
    """Where a spinning child under the quota stopped running (µs, CLOCK_MONOTONIC); the cgroup
    is removed whatever happens."""
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: join the cgroup, spin, report the last instant before each gap
            code = 1
            try:
                os.close(r)
                with open(f"{cgroup}/cgroup.procs", "w") as procs:
                    procs.write(str(os.getpid()))
                starts, end = [], time.monotonic_ns() + int(spin_s * 1e9)
                last = time.monotonic_ns()
                while last < end:
                    now = time.monotonic_ns()
                    if now - last > 500_000:  # a stall (the quota's are >= 1 ms; a preemption is shorter)
                        starts.append(last / 1e3)
                    last = now
                os.write(w, json.dumps(starts).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        data = b""
        while chunk := os.read(r, 1 << 16):
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        return json.loads(data or b"[]")
    finally:
        os.rmdir(cgroup)


def cfs_tick_us():
    """The largest candidate tick (HZ 1000, 300, 250, 100) on whose multiples the stalls start."""
    cgroup = quota_cgroup()
    if cgroup is None:
        return None
    starts = stall_starts(cgroup)
    if len(starts) < 10:
        return None
    for tick in (10000, 10000 / 3, 4000, 1000):
        # How tightly the starts' phases within a tick cluster (1: all at one phase).
        phase = abs(sum(cmath.exp(2j * cmath.pi * t / tick) for t in starts)) / len(starts)
        if phase > 0.9:
            return round(tick, 1)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patch", help="cluster config to update in place")
    ap.add_argument("--contention-from", help="profile.json written by moe profile --contention K")
    ap.add_argument("--cores", type=int, help="with --patch: set every node's cores")
    a = ap.parse_args()
    print(f"+ measure_host.py" + "".join(f" --{k} {v}" for k, v in vars(a).items() if v is not None))
    late = []
    for nap in (10, 20, 40, 80, 160, 320, 500):
        for _ in range(50):
            t = time.perf_counter()
            time.sleep(nap * 1e-6)
            late.append((time.perf_counter() - t) * 1e6 - nap)
    yields = []
    for _ in range(200):
        t = time.perf_counter()
        for _ in range(64):
            os.sched_yield()
        yields.append((time.perf_counter() - t) * 1e6)
    src, dst = bytearray(b"x" * (64 << 20)), bytearray(64 << 20)
    dst[:] = src  # fault the pages in: the runtime's buffers are reused
    copies = []
    for _ in range(5):
        t = time.perf_counter()
        dst[:] = src
        copies.append(len(src) / (time.perf_counter() - t) / 1e9)
    m = {"nap_slack_us": round(statistics.median(late), 1), "yield_us": round(statistics.median(yields), 1),
         "coordinator_copy_gbytes_per_s": round(statistics.median(copies), 2)}
    tick = cfs_tick_us()
    if tick is not None:
        m["cfs_tick_us"] = tick
    if a.contention_from:
        profile = json.load(open(a.contention_from))
        if "contention" not in profile:
            raise SystemExit(f"{a.contention_from}: no contention (profile it with moe profile --contention K)")
        measured = profile["contention"]
        if "by_tokens" in measured:  # per token count, on different and on the same experts
            points = measured["by_tokens"]
            m["contention"] = {"tokens": [p["tokens"] for p in points],
                               "different_experts": [round(max(p["value"], 0), 3) for p in points],
                               # negative: the other rank warmed the cache with the same expert
                               "same_experts": [round(max(p["same_experts"], -0.9), 3) for p in points]}
        else:
            m["contention"] = round(measured["value"], 3)
    if a.patch:
        c = json.load(open(a.patch))
        c.setdefault("poll", {}).update(nap_slack_us=m["nap_slack_us"], yield_us=m["yield_us"])
        c["coordinator_copy_gbytes_per_s"] = m["coordinator_copy_gbytes_per_s"]
        if "cfs_tick_us" in m:
            c["cfs_tick_us"] = m["cfs_tick_us"]
        for node in c["nodes"]:
            if "contention" in m:
                node["contention"] = m["contention"]
            if a.cores is not None:
                node["cores"] = a.cores
        json.dump(c, open(a.patch, "w"), indent=1)
    print(json.dumps(m))


if __name__ == "__main__":
    main()
