#!/usr/bin/env bash
# Installs the Debian packages the project needs (only those missing) and builds it.
# Usage: launch/setup.sh [BUILD_DIR]   (default: build). Set MOE_WITH_CUDA=ON/OFF to force.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

packages=(cmake g++ make pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libcereal-dev
  libboost-program-options-dev nlohmann-json3-dev libsentencepiece-dev libgtest-dev
  libbenchmark-dev libdnnl-dev)
launch/install-missing.sh "${packages[@]}"

cuda_flag=()
[[ -n "${MOE_WITH_CUDA:-}" ]] && cuda_flag=(-DMOE_WITH_CUDA="$MOE_WITH_CUDA")
echo "+ cmake -S . -B $build_dir ${cuda_flag[*]}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMOE_WARNINGS_AS_ERRORS=ON "${cuda_flag[@]}" >/dev/null
echo "+ cmake --build $build_dir -j$(nproc)"
if ! cmake --build "$build_dir" -j"$(nproc)" >"$build_dir/build.log" 2>&1; then
  grep -E 'error|Error' "$build_dir/build.log" | head -40 >&2
  echo "build failed: see $build_dir/build.log" >&2
  exit 1
fi
