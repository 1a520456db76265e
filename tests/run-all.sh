#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, reference, MPI, CLI errors).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh build
cd build
echo "+ ctest --output-on-failure -j2"
ctest --output-on-failure -j2 --timeout 600
