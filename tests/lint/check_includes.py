#!/usr/bin/env python3
"""The include floors of the tree (DESIGN.md): runtime -> router -> model -> ranks, each folder
including only itself and the floors below it. Fails, naming file, line and include, on:
  - an #include of a folder above the including file's floor (or of tests/ or launch/);
  - MPI, CUDA, NCCL or cuBLAS headers outside runtime/mpi, runtime/cuda, ranks and tests
    (router/ and model/ are plain libraries; moe_runtime links no MPI);
  - any C++ file under launch/ (scripts only), and a launch/ script line that uses tests/.
Usage: check_includes.py REPO_ROOT"""
import os
import re
import sys

SOURCES = (".cpp", ".hpp", ".cu", ".cuh", ".h", ".cc")
# Folder -> project folders it may include. The longest matching prefix decides.
ALLOWED = {
    "runtime/mpi/": ["runtime/"],
    "runtime/cuda/": ["runtime/"],
    "runtime/": ["runtime/"],  # but not runtime/mpi/ (below)
    "router/sim/": ["runtime/", "router/"],
    "router/": ["runtime/", "router/"],  # but not router/sim/
    "model/": ["runtime/", "router/", "model/"],
    "ranks/commands/": ["runtime/", "router/", "model/", "ranks/"],
    "ranks/main.cpp": ["runtime/", "router/", "model/", "ranks/"],
    "ranks/": ["runtime/", "router/", "model/", "ranks/"],  # but not ranks/commands/
    "tests/": ["runtime/", "router/", "model/", "ranks/", "tests/", "launch/"],
}
# Sub-folders a floor may not reach into even though the floor itself is allowed.
FORBIDDEN = {
    "runtime/": ["runtime/mpi/"],
    "runtime/mpi/": [],
    "runtime/cuda/": ["runtime/mpi/"],
    "ranks/commands/": [],
    "ranks/main.cpp": [],
    "runtime/cpu/": ["runtime/mpi/", "runtime/cuda/"],
    "router/": ["router/sim/", "runtime/mpi/", "runtime/cuda/"],
    "router/sim/": ["runtime/mpi/", "runtime/cuda/"],
    "model/": ["router/sim/", "runtime/mpi/", "runtime/cuda/"],
    "ranks/": ["ranks/commands/"],
}
PLAIN = ("router/", "model/", "runtime/activity", "runtime/device.hpp", "runtime/error",
         "runtime/messages", "runtime/rank_stats", "runtime/wire", "runtime/transport",
         "runtime/deadline", "runtime/atomic_file", "runtime/cpu/")
SYSTEM_HEADER = re.compile(r"#\s*include\s*<(mpi\.h|nccl\.h|cuda[a-z_]*\.h|cublas[a-zA-Z_]*\.h)>")
PROJECT_INCLUDE = re.compile(r'#\s*include\s*"([a-z_]+/[^"]+)"')


def longest_prefix(path, table):
    keys = [k for k in table if path == k or path.startswith(k)]
    return max(keys, key=len) if keys else None


def check_file(rel, text, errors):
    floor = longest_prefix(rel, ALLOWED)
    for n, line in enumerate(text.splitlines(), 1):
        m = PROJECT_INCLUDE.search(line)
        if m and floor:
            target = m.group(1)
            top = target.split("/")[0] + "/"
            if top not in ("runtime/", "router/", "model/", "ranks/", "tests/", "launch/"):
                continue
            bad = not any(target.startswith(a) for a in ALLOWED[floor])
            banned = FORBIDDEN.get(longest_prefix(rel, FORBIDDEN), [])
            bad = bad or any(target.startswith(b) for b in banned)
            if bad:
                errors.append(f"{rel}:{n}: includes {target}, above its floor ({floor})")
        if SYSTEM_HEADER.search(line) and rel.startswith(PLAIN):
            errors.append(f"{rel}:{n}: {line.strip()} in a library that must stay free of it")


def main(root):
    errors = []
    for folder in ("runtime", "router", "model", "ranks", "tests", "launch"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if folder == "launch":
                    if f.endswith(SOURCES):
                        errors.append(f"{rel}: C++ under launch/ (scripts only)")
                        continue
                    try:
                        lines = open(path, encoding="utf-8").read().splitlines()
                    except UnicodeDecodeError:
                        continue
                    for n, line in enumerate(lines, 1):
                        code = line.split("#", 1)[0]
                        if re.search(r"(^|[^a-z_])tests/", code):
                            errors.append(f"{rel}:{n}: launch/ uses tests/: {line.strip()}")
                elif f.endswith(SOURCES):
                    check_file(rel, open(path, encoding="utf-8").read(), errors)
    for e in errors:
        print(e)
    print(f"include floors: {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    sys.exit(main(sys.argv[1]))
