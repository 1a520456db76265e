#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, reference, MPI, CLI errors, SLURM,
# lint: include floors and formatting).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh build
if ! command -v clang-format >/dev/null; then  # the format check's only extra need
  echo "+ apt-get install clang-format"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq clang-format >/dev/null
fi
cd build
echo "+ ctest --output-on-failure -j2"
ctest --output-on-failure -j2 --timeout 600
