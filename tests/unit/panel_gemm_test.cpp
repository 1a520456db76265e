// panel_gemm at every SIMD level this CPU runs: equal to a double-precision product (shapes with
// rows past a block, outputs ending inside a panel, K of one), packing that round-trips, and a
// row's bits the same whatever rows or threads share the call: what lets a micro-batch equal the
// whole batch.
#include "runtime/cpu/panel_gemm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"
#include "tests/unit/gemm_check.hpp"
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

TEST(PanelGemm, PackingKeepsEveryWeightAndPadsTheLastPanelWithZeros) {
  constexpr int N = 50, K = 7;
  const auto w = random_floats(size_t(N) * K, 1);
  const auto panels = pack_panels(w.data(), N, K);
  ASSERT_EQ(panels.size(), size_t(2) * K * kPanelColumns);
  const WeightMatrix view{WeightFormat::kF32, panels.data(), nullptr, nullptr,
                          WeightLayout::kPanels};
  std::vector<float> back(w.size());
  view.widen(0, N, K, back.data());
  EXPECT_EQ(back, w);
  for (int n = N; n < 2 * kPanelColumns; ++n)
    for (int k = 0; k < K; ++k)
      ASSERT_EQ(panels[size_t(kPanelColumns) * K + size_t(k) * kPanelColumns + n % kPanelColumns],
                0.0f);
  // A view from the second panel on, and one that starts inside a panel (refused, named).
  std::vector<float> second(size_t(N - kPanelColumns) * K);
  view.rows_from(kPanelColumns, K).widen(0, N - kPanelColumns, K, second.data());
  EXPECT_TRUE(std::equal(second.begin(), second.end(), w.begin() + size_t(kPanelColumns) * K));
  EXPECT_THROW(view.rows_from(5, K), Error);
}

TEST(PanelGemm, EqualsDoublePrecisionProductAtEveryLevel) {
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{1, 1, 1},    {1, 48, 19},  {1, 200, 33}, {2, 50, 64},   {3, 13, 100},
                          {5, 97, 771}, {8, 96, 768}, {9, 40, 300}, {17, 144, 48}, {37, 200, 96}};
  for (const Shape& s : shapes) {
    const auto x = random_floats(size_t(s.M) * s.K, 1);
    const auto w = random_floats(size_t(s.N) * s.K, 2);
    const auto y0 = random_floats(size_t(s.M) * s.N, 3);
    const auto panels = pack_panels(w.data(), s.N, s.K);
    for (SimdLevel level : runnable_simd_levels())
      expect_equals_double_product(
          [&](float* y, bool accumulate, bool relu) {
            panel_gemm(level, x.data(), panels.data(), y, s.M, s.N, s.K, accumulate, relu);
          },
          x, w, y0, s.M, s.N, s.K, simd_level_name(level));
  }
}

// Each output is one chain of fused multiply-adds over k in order: the same bits for a row alone,
// in any block of rows, on any thread, and where the levels fuse alike (AVX2 and AVX-512), at
// either level.
TEST(PanelGemm, RowResultDoesNotDependOnTheOtherRowsTheThreadsOrTheVectorWidth) {
  constexpr int M = 23, N = 150, K = 768;
  const auto x = random_floats(size_t(M) * K, 4);
  const auto w = random_floats(size_t(N) * K, 5);
  const auto panels = pack_panels(w.data(), N, K);
  std::vector<float> first_level;
  for (SimdLevel level : runnable_simd_levels()) {
    std::vector<float> all(size_t(M) * N), split(size_t(M) * N), one(N);
    panel_gemm(level, x.data(), panels.data(), all.data(), M, N, K, false, false);
    ThreadPool::instance().resize(2);
    panel_gemm(level, x.data(), panels.data(), split.data(), 11, N, K, false, false);
    panel_gemm(level, x.data() + size_t(11) * K, panels.data(), split.data() + size_t(11) * N,
               M - 11, N, K, false, false);
    ThreadPool::instance().resize(1);
    EXPECT_EQ(split, all) << simd_level_name(level);
    for (int m = 0; m < M; ++m) {
      panel_gemm(level, x.data() + size_t(m) * K, panels.data(), one.data(), 1, N, K, false, false);
      for (int n = 0; n < N; ++n)
        ASSERT_EQ(one[n], all[size_t(m) * N + n])
            << simd_level_name(level) << ": row " << m << " alone differs at column " << n;
    }
    if (level == SimdLevel::kBaseline) continue;  // no fused multiply-add there
    if (first_level.empty())
      first_level = all;
    else
      EXPECT_EQ(all, first_level) << simd_level_name(level) << " differs from AVX2";
  }
}

}  // namespace
}  // namespace moe
