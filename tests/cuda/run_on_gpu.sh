#!/usr/bin/env bash
# Builds and runs the CUDA tests and the expert-GEMM benchmark on a GPU machine that has the CUDA
# toolkit, cuBLAS, NCCL, cmake, ninja and a C++ compiler but not this project's Debian dependencies
# or Open MPI: those come as .deb files in .debs/ (tests/cuda/fetch_debs.sh, on a Debian machine),
# unpacked with `dpkg -x` into a private prefix, never into /. With --routing-eval it then runs the
# routing evaluation with a GPU rank beside a CPU rank (launch/experiments/routing_eval.sh).
# Usage: tests/cuda/run_on_gpu.sh [--routing-eval] [--no-memcheck] [--no-tests] [OUT_DIR]
set -euo pipefail

usage() {
  cat <<'EOF'
tests/cuda/run_on_gpu.sh [--routing-eval] [--no-memcheck] [--no-tests] [OUT_DIR]
  Unpacks .debs/*.deb into /tmp/moe-deps (only the packages whose libraries the machine lacks;
  Open MPI only where it has no mpirun), configures build-gpu (-DMOE_WITH_CUDA=ON for sm_90
  where nvcc is there), builds moe, cuda_tests and bench_cuda_expert_gemm, runs the tests (the
  kernel tests once more under compute-sanitizer memcheck) and the benchmark; logs to OUT_DIR
  (default: $OUT, else build-gpu/out).
  --routing-eval  then the hetero routing and placement evaluation, devices cpu:1,cuda:0,cpu:4
                  (ROUTING_EVAL_DEVICES overrides), its table in OUT_DIR/routing-table.md
  --no-memcheck   skip compute-sanitizer;  --no-tests  skip the CUDA tests and the benchmark
Fetch the packages first, on a Debian 12 machine, from the repository root:
  tests/cuda/fetch_debs.sh
Then, through the device tool: run(command="tests/cuda/run_on_gpu.sh --routing-eval", carry=[".debs"]).
EOF
}

routing_eval=0 memcheck=1 tests=1 out=
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --routing-eval) routing_eval=1; shift ;;
    --no-memcheck) memcheck=0; shift ;;
    --no-tests) tests=0; shift ;;
    -*) echo "run_on_gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
cd "$(dirname "$0")/../.."
out=${out:-${OUT:-build-gpu/out}}
deps=/tmp/moe-deps
mkdir -p "$out" "$deps"
run() { echo "+ $*"; "$@"; }

ls .debs/project/*.deb >/dev/null 2>&1 || { echo "no .debs/project/*.deb: run tests/cuda/fetch_debs.sh (see --help)" >&2; exit 1; }
for deb in .debs/project/*.deb; do
  # The machine's own libgfortran (newer) wins when it has one.
  if [[ $deb == *libgfortran5_* ]] && ldconfig -p | grep -q 'libgfortran.so.5 '; then continue; fi
  dpkg -x "$deb" "$deps"
done
have_mpi=0
command -v mpirun >/dev/null && have_mpi=1
known_libs=$(ldconfig -p)
has_every_library() {  # the sonames in package $1 are all known to the machine's loader already
  local libs lib
  libs=$(dpkg-deb -c "$1" | grep -oE '[^/ ]+\.so\.[0-9]+( |$)' | tr -d ' ' | sort -u || true)
  [[ -n $libs ]] || return 1
  for lib in $libs; do grep -qF " $lib " <<<"$known_libs" || return 1; done
}
if ((!have_mpi)); then
  # Open MPI's own packages are never on the machine; of the libraries it loads, the machine's
  # copy (often newer) wins, as an older one first on the path could break its other programs.
  for deb in .debs/openmpi/*.deb; do has_every_library "$deb" || dpkg -x "$deb" "$deps"; done
fi
multiarch=$deps/usr/lib/x86_64-linux-gnu
# Some packages still put their libraries under /lib.
export LD_LIBRARY_PATH=$multiarch:$multiarch/openblas-pthread:$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ((!have_mpi)); then
  # Open MPI unpacked: its programs' plain names are Debian alternatives (links into /etc), so
  # they are linked here; it finds its components, help texts and wrapper data under
  # OPAL_PREFIX; the PMIx it links is told where its plugins are.
  for tool in mpirun mpiexec mpicc mpicxx mpic++; do ln -sf "$tool.openmpi" "$deps/usr/bin/$tool"; done
  [[ -f $deps/usr/lib/libpsm1/libpsm_infinipath.so.1.16 ]] &&
    ln -sf ../libpsm1/libpsm_infinipath.so.1.16 "$multiarch/libpsm_infinipath.so.1"
  export PATH=$deps/usr/bin:$PATH OPAL_PREFIX=$deps/usr PMIX_MCA_mca_base_component_path=$multiarch/pmix2/lib/pmix
  export LD_LIBRARY_PATH=$multiarch/openmpi/lib:$LD_LIBRARY_PATH
  # Its default launcher refuses to start without ssh or rsh, even on one node: there, the
  # single-node one.
  command -v ssh >/dev/null || command -v rsh >/dev/null || export OMPI_MCA_plm=isolated
fi
cuda=OFF
command -v nvcc >/dev/null && cuda=ON

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  if [[ $cuda == ON ]]; then nvcc --version | tail -1; else echo "no nvcc: building without CUDA"; fi
  cmake --version | head -1
  mpirun --version | head -1
} 2>&1 | tee "$out/machine.txt"

run cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=$cuda \
  -DMOE_WARNINGS_AS_ERRORS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DBoost_DIR="$multiarch/cmake/Boost-1.74.0" -DBLA_VENDOR=OpenBLAS \
  -DCMAKE_LIBRARY_PATH="$multiarch/openblas-pthread" \
  -DCBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-pthread" \
  >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
targets=(moe fixture_tool)
[[ $cuda == ON ]] && ((tests)) && targets+=(cuda_tests bench_cuda_expert_gemm)
run cmake --build build-gpu -j"$(nproc)" --target "${targets[@]}" \
  >"$out/build.log" 2>&1 || { grep -E 'error|Error' "$out/build.log" | head -40; exit 1; }

status=0
if [[ $cuda == ON ]] && ((tests)); then
  run build-gpu/tests/cuda/cuda_tests --gtest_output=xml:"$out/cuda_tests.xml" \
    2>&1 | tee "$out/cuda_tests.log" || status=1
  if ((memcheck)) && command -v compute-sanitizer >/dev/null; then
    run timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 \
      build-gpu/tests/cuda/cuda_tests --gtest_filter='Gpu*:CudaDevice.*' \
      >"$out/memcheck.log" 2>&1 || status=1
    tail -5 "$out/memcheck.log"
  fi
  run build-gpu/tests/cuda/bench_cuda_expert_gemm --benchmark_out="$out/bench.json" \
    --benchmark_out_format=json 2>&1 | tee "$out/bench.log" || status=1
fi
if ((routing_eval)); then
  devices=${ROUTING_EVAL_DEVICES:-cpu:1,cuda:0,cpu:4}
  set -o pipefail
  run launch/experiments/routing_eval.sh --work /tmp/moe-routing-eval --moe build-gpu/moe \
    --settings hetero --hetero-devices "$devices" 2>&1 | tee "$out/routing-eval.log" || status=1
  cp /tmp/moe-routing-eval/table.md "$out/routing-table.md" 2>/dev/null || status=1
fi
exit $status
