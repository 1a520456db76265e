#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, reference, MPI, CLI errors, SLURM,
# two-node namespaces, lint: include floors and formatting), then the sanitizer stage
# (tests/sanitize.sh: ASan + UBSan builds of the tests, the fuzz targets, TSan on the threads).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh build
launch/install-missing.sh clang-format  # the format check's only extra need
cd build
echo "+ ctest --output-on-failure -j2"
ctest --output-on-failure -j2 --timeout 600
cd ..
tests/sanitize.sh
