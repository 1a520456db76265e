#!/usr/bin/env bash
# The sanitizer stage of the test suite (tests/run-all.sh runs it after the plain build's tests):
#   1. build-asan: clang, AddressSanitizer + UndefinedBehaviorSanitizer on every target, and the
#      libFuzzer targets (tests/fuzz). Runs the unit, reference and CLI tests and a set of mpirun
#      tests under them (a report fails the test), then every fuzz target over its committed
#      corpus (tests/fuzz/corpus/TARGET) and on for FUZZ_SECONDS more (default 15) from it; a
#      finding fails the stage, its input saved in build-asan/fuzz-findings/.
#   2. build-tsan: ThreadSanitizer on the threaded parts: the thread pool's tests, and generation
#      in one process with two threads, and with an expert budget's swapper thread.
# Installs clang (with libFuzzer) and LLVM's OpenMP when missing. Usage: tests/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${FUZZ_SECONDS:-15}
launch/install-missing.sh clang libclang-rt-14-dev libomp-dev

build() {  # build DIR SANITIZERS FUZZ TARGETS...
  local dir=$1 sanitizers=$2 fuzz=$3
  shift 3
  echo "+ cmake -S . -B $dir -DMOE_SANITIZE=$sanitizers -DMOE_FUZZ=$fuzz (clang, no CUDA)"
  CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=OFF \
    -DMOE_SANITIZE="$sanitizers" -DMOE_FUZZ="$fuzz" >/dev/null
  echo "+ cmake --build $dir --target $*"
  if ! cmake --build "$dir" -j"$(nproc)" --target "$@" >"$dir/build.log" 2>&1; then
    grep -E 'error' "$dir/build.log" | head -40 >&2
    echo "build failed: see $dir/build.log" >&2
    exit 1
  fi
}

# --- ASan + UBSan ---------------------------------------------------------------------------
# Open MPI keeps memory until exit on purpose: leaks are not reported; everything else aborts.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
targets=(moe runtime_tests router_tests model_tests ranks_tests fixture_tool)
for t in tests/fuzz/fuzz_*.cpp; do
  t=${t##*/}
  targets+=("${t%.cpp}")
done
build build-asan address,undefined ON "${targets[@]}"
cd build-asan
# Everything but what needs timing (fault deadlines), other machines' parts (SLURM, namespaces),
# the linters, and the many mpirun layouts (one of them runs below).
echo "+ ctest (ASan + UBSan)"
ctest --output-on-failure -j2 --timeout 600 \
  -E '^(lint\.|multinode\.|launch\.slurm|mpi\.fault\.|mpi\.layouts\.|mpi\.resume\.)|Cuda'
ctest --output-on-failure --timeout 600 -R '^(mpi\.layouts\.switch8_f32\.latency-aware|mpi\.resume\.np3)$'

echo "+ fuzz: each target over its corpus, then ${fuzz_seconds}s more from it"
mkdir -p fuzz-findings
for t in tests/fuzz/fuzz_*; do
  name=${t##*/fuzz_}
  corpus=$root/tests/fuzz/corpus/$name
  work=$(mktemp -d)
  if ! "$t" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -artifact_prefix="fuzz-findings/$name-" -print_final_stats=1 "$work" "$corpus" >"fuzz-$name.log" 2>&1; then
    tail -n 40 "fuzz-$name.log"
    echo "FAIL: fuzz target $name found an input that breaks it: $(ls fuzz-findings/"$name"-* 2>/dev/null)"
    exit 1
  fi
  echo "fuzz $name: $(grep -oE 'stat::number_of_executed_units: *[0-9]+' "fuzz-$name.log" | grep -oE '[0-9]+$') runs, no finding"
  rm -rf "$work"
done
cd "$root"

# --- TSan -------------------------------------------------------------------------------------
unset ASAN_OPTIONS UBSAN_OPTIONS
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
build build-tsan thread OFF moe runtime_tests
echo "+ runtime_tests (TSan)"
build-tsan/tests/runtime_tests --gtest_brief=1
echo "+ moe generate --threads 2 (TSan)"
build-tsan/moe generate --model configs/models/switch-tiny --input configs/models/switch-tiny/prompts.jsonl \
  --threads 2 --batch-size 4 --quiet --max-new-tokens 8
# The swapper thread of a dynamic committee beside the step's (wait: loads in a step too).
for policy in substitute wait; do
  echo "+ moe generate --expert-memory 25% --on-missing-expert $policy (TSan)"
  build-tsan/moe generate --model configs/models/switch-tiny \
    --input configs/models/switch-tiny/prompts.jsonl --batch-size 4 --quiet --max-new-tokens 8 \
    --expert-memory 25% --on-missing-expert "$policy"
done
echo "sanitizers: no report"
