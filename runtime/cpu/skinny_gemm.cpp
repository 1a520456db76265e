#include "runtime/cpu/skinny_gemm.hpp"

#include <algorithm>

#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

// One entry point per SIMD level, each compiled with its own target flags (runtime/CMakeLists.txt).
#define DECLARE_LEVEL(ns)                                                                \
  namespace ns {                                                                         \
  void skinny_gemm(const float* x, const WeightMatrix& w, float* y, int M, int N, int K, \
                   bool accumulate, bool relu, int n_begin, int n_end);                  \
  }
DECLARE_LEVEL(skinny_avx512)
DECLARE_LEVEL(skinny_avx2)
DECLARE_LEVEL(skinny_baseline)
#undef DECLARE_LEVEL

SimdLevel best_simd_level() {
  static const SimdLevel best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return SimdLevel::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::kAvx2;
    return SimdLevel::kBaseline;
  }();
  return best;
}

std::vector<SimdLevel> runnable_simd_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::kBaseline, SimdLevel::kAvx2, SimdLevel::kAvx512})
    if (l <= best_simd_level()) levels.push_back(l);
  return levels;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512:
      return "avx512";
    case SimdLevel::kAvx2:
      return "avx2";
    case SimdLevel::kBaseline:
      return "baseline";
  }
  return "?";
}

void skinny_gemm_columns(SimdLevel level, const float* x, const WeightMatrix& w, float* y, int M,
                         int N, int K, bool accumulate, bool relu, int n_begin, int n_end) {
  MOE_CHECK(level <= best_simd_level(), "skinny_gemm: this CPU cannot run the ",
            simd_level_name(level), " kernel");
  if (M == 0 || n_begin >= n_end) return;
  switch (level) {
    case SimdLevel::kAvx512:
      return skinny_avx512::skinny_gemm(x, w, y, M, N, K, accumulate, relu, n_begin, n_end);
    case SimdLevel::kAvx2:
      return skinny_avx2::skinny_gemm(x, w, y, M, N, K, accumulate, relu, n_begin, n_end);
    case SimdLevel::kBaseline:
      return skinny_baseline::skinny_gemm(x, w, y, M, N, K, accumulate, relu, n_begin, n_end);
  }
}

void skinny_gemm(SimdLevel level, const float* x, const WeightMatrix& w, float* y, int M, int N,
                 int K, bool accumulate, bool relu, bool parallel) {
  if (M == 0 || N == 0) return;
  auto columns = [=](int begin, int end) {
    skinny_gemm_columns(level, x, w, y, M, N, K, accumulate, relu, begin, end);
  };
  const int chunks = (N + kSkinnyColumnsPerRun - 1) / kSkinnyColumnsPerRun;
  if (!parallel || chunks == 1) return columns(0, N);
  parallel_for(chunks, [&](int begin, int end) {
    columns(begin * kSkinnyColumnsPerRun, std::min(N, end * kSkinnyColumnsPerRun));
  });
}

}  // namespace moe
