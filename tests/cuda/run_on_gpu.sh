#!/usr/bin/env bash
# Builds and runs the CUDA tests and the expert-GEMM benchmark on a GPU machine that has the CUDA
# toolkit, cuBLAS, NCCL, Open MPI, cmake and a C++ compiler but not this project's other Debian
# dependencies: those come as .deb files in .debs/ (fetched on a Debian machine, see --help),
# unpacked with `dpkg -x` into a private prefix — never into /.
# Usage: tests/cuda/run_on_gpu.sh [OUT_DIR]   (default: $OUT, else build-gpu/out)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  cat <<'EOF'
tests/cuda/run_on_gpu.sh [OUT_DIR]
  Unpacks .debs/*.deb into /tmp/moe-deps, configures build-gpu with -DMOE_WITH_CUDA=ON for
  sm_90, builds cuda_tests and bench_cuda_expert_gemm, runs them (kernel tests once more under
  compute-sanitizer memcheck), and writes the logs to OUT_DIR.
Fetch the packages first, on a Debian 12 machine, from the repository root:
  mkdir -p .debs && (cd .debs && apt-get download libopenblas-dev libopenblas-pthread-dev \
    libopenblas0-pthread libopenblas0 libgfortran5 libgtest-dev libbenchmark-dev \
    libbenchmark1debian nlohmann-json3-dev libcereal-dev libsentencepiece-dev libsentencepiece0 \
    libprotobuf-lite32 libboost-program-options1.74-dev libboost-program-options1.74.0 \
    libboost1.74-dev)
Then, through the device tool: run(command="tests/cuda/run_on_gpu.sh", carry=[".debs"]).
EOF
  exit 0
fi

cd "$(dirname "$0")/../.."
out=${1:-${OUT:-build-gpu/out}}
deps=/tmp/moe-deps
mkdir -p "$out" "$deps"
run() { echo "+ $*"; "$@"; }

ls .debs/*.deb >/dev/null 2>&1 || { echo "no .debs/*.deb: see --help" >&2; exit 1; }
for deb in .debs/*.deb; do
  # The machine's own libgfortran (newer) wins when it has one.
  if [[ $deb == *libgfortran5_* ]] && ldconfig -p | grep -q 'libgfortran.so.5 '; then continue; fi
  dpkg -x "$deb" "$deps"
done
multiarch=$deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$multiarch:$multiarch/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  nvcc --version | tail -1
  cmake --version | head -1
} 2>&1 | tee "$out/machine.txt"

run cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=ON \
  -DMOE_WARNINGS_AS_ERRORS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DBoost_DIR="$multiarch/cmake/Boost-1.74.0" -DBLA_VENDOR=OpenBLAS \
  -DCMAKE_LIBRARY_PATH="$multiarch/openblas-pthread" \
  -DCBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-pthread" \
  >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
run cmake --build build-gpu -j"$(nproc)" --target cuda_tests bench_cuda_expert_gemm \
  >"$out/build.log" 2>&1 || { grep -E 'error|Error' "$out/build.log" | head -40; exit 1; }

status=0
run build-gpu/tests/cuda/cuda_tests --gtest_output=xml:"$out/cuda_tests.xml" \
  2>&1 | tee "$out/cuda_tests.log" || status=1
if command -v compute-sanitizer >/dev/null; then
  run timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 \
    build-gpu/tests/cuda/cuda_tests --gtest_filter='Gpu*:CudaDevice.*' \
    >"$out/memcheck.log" 2>&1 || status=1
  tail -5 "$out/memcheck.log"
fi
run build-gpu/tests/cuda/bench_cuda_expert_gemm --benchmark_out="$out/bench.json" \
  --benchmark_out_format=json 2>&1 | tee "$out/bench.log" || status=1
exit $status
