#!/usr/bin/env bash
# Builds and runs the CUDA tests and the expert-GEMM benchmark on a GPU machine that has the CUDA
# toolkit, cuBLAS, NCCL, cmake, ninja and a C++ compiler but not this project's Debian dependencies
# or Open MPI: those come as .deb files in .debs/ (tests/cuda/fetch_debs.sh, on a Debian machine),
# unpacked with `dpkg -x` into a private prefix, never into /. With --routing-eval it then runs the
# routing evaluation with a GPU rank beside a CPU rank (launch/experiments/routing_eval.sh).
# Usage: tests/cuda/run_on_gpu.sh [--routing-eval] [--no-memcheck] [--no-tests] [--pack DIR] [OUT_DIR]
set -euo pipefail

usage() {
  cat <<'EOF'
tests/cuda/run_on_gpu.sh [--routing-eval] [--no-memcheck] [--no-tests] [--pack DIR] [OUT_DIR]
  Unpacks .debs/*.deb into /tmp/moe-deps (only the packages whose libraries the machine lacks;
  Open MPI only where it has no mpirun), configures build-gpu (-DMOE_WITH_CUDA=ON for sm_90
  where nvcc is there), builds moe, cuda_tests and bench_cuda_expert_gemm, runs the tests (the
  kernel tests once more under compute-sanitizer memcheck) and the benchmark; logs to OUT_DIR
  (default: $OUT, else build-gpu/out).
  --routing-eval  then the hetero routing and placement evaluation, devices cpu:1,cuda:0,cpu:4
                  (ROUTING_EVAL_DEVICES overrides), its table in OUT_DIR/routing-table.md
  --no-memcheck   skip compute-sanitizer;  --no-tests  skip the CUDA tests and the benchmark
  --pack DIR      after every step, OUT_DIR packed into DIR/logs.tar.gz, with the step list, the
                  table and the benchmark's JSON beside it (the device tool brings back 8 files)
Fetch the packages first, on a Debian 12 machine, from the repository root:
  tests/cuda/fetch_debs.sh
Then, through the device tool:
  run(command="tests/cuda/run_on_gpu.sh --routing-eval --no-memcheck --pack $OUT", carry=[".debs"]).
EOF
}

routing_eval=0 memcheck=1 tests=1 out= pack=
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --routing-eval) routing_eval=1; shift ;;
    --no-memcheck) memcheck=0; shift ;;
    --no-tests) tests=0; shift ;;
    --pack) pack=$2; shift 2 ;;
    -*) echo "run_on_gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
cd "$(dirname "$0")/../.."
out=${out:-build-gpu/out}
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

status=0
step() {  # step NAME COMMAND...: runs it, logs its time and outcome to OUT/steps.txt
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  echo "$name: rc $rc, $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
  ((rc == 0)) || status=1
  if [[ -n $pack ]]; then
    tar -C "$out" -czf "$pack/logs.tar.gz" . 2>/dev/null || true
    cp "$out/steps.txt" "$pack/"
    for f in routing-table.md bench.json; do
      if [[ -f $out/$f ]]; then cp "$out/$f" "$pack/"; fi
    done
  fi
  return 0
}
step configure run cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=$cuda \
  -DMOE_WARNINGS_AS_ERRORS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DBoost_DIR="$multiarch/cmake/Boost-1.74.0" -DBLA_VENDOR=OpenBLAS \
  -DCMAKE_LIBRARY_PATH="$multiarch/openblas-pthread" \
  -DCBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-pthread" \
  >"$out/configure.log" 2>&1
((status == 0)) || { tail -40 "$out/configure.log"; exit 1; }
targets=(moe fixture_tool bench_poll_notice)
[[ $cuda == ON ]] && ((tests)) && targets+=(cuda_tests bench_cuda_expert_gemm)
step build run cmake --build build-gpu -j"$(nproc)" --target "${targets[@]}" >"$out/build.log" 2>&1
((status == 0)) || { grep -E 'error|Error' "$out/build.log" | head -40; exit 1; }

# vader moves large messages by reading the other process's memory (CMA) where the kernel allows
# it; a sandboxed one need not, and then each message fails. Probe it with a profile of a small
# model (its link timing sends blocks above the eager limit); fall back to copies through the
# shared segment (fragments that both ends must progress: slower for large blocks).
source launch/mpirun_flags.sh
cma_probe() {
  timeout 120 mpirun "${MPIRUN_FLAGS[@]}" -np 2 build-gpu/moe profile --model tests/reference/fixtures/switch8_f32/model \
    --token-counts 1 --repeats 1 --out "$out/cma-probe.json" --deadline 30 >"$out/cma-probe.log" 2>&1
}
step cma_probe cma_probe
if ! grep -q '"link_bytes_per_us"' "$out/cma-probe.json" 2>/dev/null; then
  echo "vader single-copy (CMA) failed here: copies through the shared segment instead" | tee -a "$out/steps.txt"
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
  status=0  # the probe's failure is the answer, not the run's (configure and build exit on theirs)
fi
if [[ $cuda == ON ]] && ((tests)); then
  step cuda_tests run timeout 300 build-gpu/tests/cuda/cuda_tests --gtest_output=xml:"$out/cuda_tests.xml" \
    >"$out/cuda_tests.log" 2>&1
  tail -3 "$out/cuda_tests.log"
  if ((memcheck)) && command -v compute-sanitizer >/dev/null; then
    step memcheck run timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 \
      build-gpu/tests/cuda/cuda_tests --gtest_filter='Gpu*:CudaDevice.*' >"$out/memcheck.log" 2>&1
    tail -5 "$out/memcheck.log"
  fi
  # A GPU expert rank beside a CPU one under mpirun, every expert on both: outputs equal to the
  # single-process CPU run (float32 within 1e-4 of each tensor's magnitude, generations exactly).
  for fixture in switch8_f32 switch4_drop_f32; do
    for policy in uniform latency-aware; do
      MOE_DEVICES=${EQUALITY_DEVICES:-cpu:1,cuda:0,cpu:1} MOE_TOLERANCE=1e-4 step "equal.$fixture.gpu-beside-cpu.$policy" \
        timeout 300 tests/mpi/equal_to_single_process.sh build-gpu "tests/reference/fixtures/$fixture" 3 replicas "$policy" \
        >>"$out/equality.log" 2>&1
    done
  done
fi
if [[ $cuda == ON ]] && ((tests)); then
  # Experts under a memory budget on the GPU: device memory backed by pinned host memory.
  step expert_memory_gpu run timeout 600 python3 tests/cuda/expert_memory_gpu.py build-gpu \
    configs/models/switch-tiny configs/models/switch-tiny/prompts.jsonl \
    >"$out/expert-memory-gpu.log" 2>&1
  tail -4 "$out/expert-memory-gpu.log"
fi
if ((routing_eval)); then
  devices=${ROUTING_EVAL_DEVICES:-cpu:1,cuda:0,cpu:4}
  step routing_eval run launch/experiments/routing_eval.sh --work /tmp/moe-routing-eval --moe build-gpu/moe \
    --settings hetero --hetero-devices "$devices" >"$out/routing-eval.log" 2>&1
  cp /tmp/moe-routing-eval/table.md "$out/routing-table.md" 2>/dev/null || status=1
  # The evaluation's inputs and raw measurements (not the checkpoint), to re-simulate elsewhere.
  step pack-evaluation tar -C /tmp/moe-routing-eval -czf "$out/routing-eval-work.tar.gz" --exclude ./wide .
fi
# How soon a napping rank notices a control message here (the simulator's poll model).
step poll_notice run timeout 60 mpirun "${MPIRUN_FLAGS[@]}" -np 2 build-gpu/tests/bench_poll_notice 200 \
  >"$out/poll-notice.log" 2>&1
# The benchmark last: the evaluation above is what a short lease must not lose.
if [[ $cuda == ON ]] && ((tests)); then
  step bench run timeout 240 build-gpu/tests/cuda/bench_cuda_expert_gemm --benchmark_out="$out/bench.json" \
    --benchmark_out_format=json >"$out/bench.log" 2>&1
fi
cat "$out/steps.txt"
[[ -f $out/routing-table.md ]] && cat "$out/routing-table.md"
exit $status
