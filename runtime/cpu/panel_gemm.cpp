#include "runtime/cpu/panel_gemm.hpp"

#include <algorithm>

#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

#define DECLARE_LEVEL(ns)                                                             \
  namespace ns {                                                                      \
  void panel_gemm(const float* x, const float* panels, float* y, int M, int N, int K, \
                  bool accumulate, bool relu, int n_begin, int n_end);                \
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

void panel_gemm_columns(SimdLevel level, const float* x, const float* panels, float* y, int M,
                        int N, int K, bool accumulate, bool relu, int n_begin, int n_end) {
  MOE_CHECK(level <= best_simd_level(), "panel_gemm: this CPU cannot run the ",
            simd_level_name(level), " kernel");
  MOE_CHECK(n_begin % kPanelColumns == 0, "panel_gemm: outputs from ", n_begin,
            " do not start a panel");
  if (M == 0 || n_begin >= n_end) return;
  switch (level) {
    case SimdLevel::kAvx512:
      return panel_avx512::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end);
    case SimdLevel::kAvx2:
      return panel_avx2::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end);
    case SimdLevel::kBaseline:
      return panel_baseline::panel_gemm(x, panels, y, M, N, K, accumulate, relu, n_begin, n_end);
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
