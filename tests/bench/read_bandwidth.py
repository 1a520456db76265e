"""The memory's read bandwidth, as bench_skinny_gemm (built beside the moe binary) probes it: one
thread summing 512 MiB, and one thread per core each summing its share at the same time. The limit
of weight-bound work on that many threads; the benchmarks print their rates against it."""
import os
import shlex
import subprocess
from pathlib import Path

ONE = "read bandwidth (one thread, best of sweeps):"
EVERY_CORE = "one per core, best of sweeps):"


def probe_bandwidth(moe):
    """GB/s by thread count, best of 3 sweeps: {1: one thread, cores: one per core (if > 1 core)}."""
    cmd = [str(Path(moe).parent / "tests" / "bench_skinny_gemm"), "--benchmark_filter=read_bandwidth",
           "--sweeps=3"]
    print("+ " + shlex.join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = {1: float(out.split(ONE)[1].split()[0])}
    if EVERY_CORE in out:
        found[os.cpu_count()] = float(out.split(EVERY_CORE)[1].split()[0])
    return found
