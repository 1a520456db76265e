#include "runtime/cpu/panel_gemm.hpp"

#include <unistd.h>

#include <algorithm>

#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

#define DECLARE_LEVEL(ns)                                                                  \
  namespace ns {                                                                           \
  void panel_gemm(const float* x, const float* panels, float* y, int M, int N, int K,      \
                  bool accumulate, bool relu, int n_begin, int n_end, bool prefetch_next); \
  }
DECLARE_LEVEL(panel_avx512)
DECLARE_LEVEL(panel_avx2)
DECLARE_LEVEL(panel_baseline)
#undef DECLARE_LEVEL

AlignedVector<float> pack_panels(const float* w, size_t N, size_t K) {
  const size_t count = (N + kPanelColumns - 1) / kPanelColumns;
  AlignedVector<float> panels(count * K * kPanelColumns, 0.0f);
  // A panel at a time, 16 k at a time: the 48 rows' runs of 16 are read and written within the
  // caches (7 GB/s against 5 for a row at a time, measured on 3072 × 768).
  constexpr size_t kStep = 16;
  for (size_t n0 = 0; n0 < N; n0 += kPanelColumns) {
    float* panel = panels.data() + n0 * K;
    const size_t columns = std::min<size_t>(kPanelColumns, N - n0);
    for (size_t k0 = 0; k0 < K; k0 += kStep)
      for (size_t c = 0; c < columns; ++c) {
        const float* row = w + (n0 + c) * K;
        for (size_t k = k0; k < std::min(K, k0 + kStep); ++k) panel[k * kPanelColumns + c] = row[k];
      }
  }
  return panels;
}

namespace {

// This core's second-level cache (1 MiB where the system does not say).
size_t second_level_cache_bytes() {
  static const size_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? size_t(reported) : size_t(1) << 20;
  }();
  return bytes;
}

}  // namespace

void panel_gemm_columns(SimdLevel level, const float* x, const float* panels, float* y, int M,
                        int N, int K, bool accumulate, bool relu, int n_begin, int n_end) {
  MOE_CHECK(level <= best_simd_level(), "panel_gemm: this CPU cannot run the ",
            simd_level_name(level), " kernel");
  MOE_CHECK(n_begin % kPanelColumns == 0, "panel_gemm: outputs from ", n_begin,
            " do not start a panel");
  if (M == 0 || n_begin >= n_end) return;
  // Prefetching the next panel while a pass reads its own from the cache pays where both panels
  // and the rows of x fit in half the cache: on the Intel Xeon of docs/BENCHMARKS.md section 12,
  // 768 × 768 at 64 rows ran 35-40% faster so, where 768 × 3072 at 12-16 rows (two panels of
  // 576 KB) ran up to 20% slower.
  const size_t footprint = (2 * size_t(kPanelColumns) + size_t(M)) * K * sizeof(float);
  const bool prefetch_next = footprint <= second_level_cache_bytes() / 2;
  switch (level) {
    case SimdLevel::kAvx512:
      return panel_avx512::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end,
                                      prefetch_next);
    case SimdLevel::kAvx2:
      return panel_avx2::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end,
                                    prefetch_next);
    case SimdLevel::kBaseline:
      return panel_baseline::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end,
                                        prefetch_next);
  }
}

void panel_gemm(SimdLevel level, const float* x, const float* panels, float* y, int M, int N, int K,
                bool accumulate, bool relu, bool parallel) {
  if (M == 0 || N == 0) return;
  const int count = (N + kPanelColumns - 1) / kPanelColumns;
  if (!parallel || count == 1)
    return panel_gemm_columns(level, x, panels, y, M, N, K, accumulate, relu, 0, N);
  parallel_for(count, [&](int begin, int end) {
    panel_gemm_columns(level, x, panels, y, M, N, K, accumulate, relu, begin * kPanelColumns,
                       std::min(N, end * kPanelColumns));
  });
}

}  // namespace moe
