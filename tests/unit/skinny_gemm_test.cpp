// skinny_gemm at every SIMD level this CPU runs and in every weight format: equal to a
// double-precision product with the weights as stored (with the odd shapes that exercise the
// tails: rows past a block, weight rows past a block, K past a vector), and a row's bits
// independent of the other rows in the call.
#include "runtime/cpu/skinny_gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "runtime/thread_pool.hpp"
#include "tests/unit/gemm_check.hpp"
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

TEST(SkinnyGemm, EqualsDoublePrecisionProductAtEveryLevelAndFormat) {
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{1, 1, 1},   {1, 37, 19},   {2, 8, 64},   {3, 13, 100}, {5, 29, 771},
                          {6, 4, 768}, {7, 33, 3072}, {13, 96, 48}, {32, 40, 768}};
  for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8})
    for (const Shape& s : shapes) {
      const auto x = random_floats(size_t(s.M) * s.K, 1);
      const auto w = random_floats(size_t(s.N) * s.K, 2);
      const auto y0 = random_floats(size_t(s.M) * s.N, 3);
      std::unique_ptr<StoredWeight> stored;
      WeightMatrix matrix{WeightFormat::kF32, w.data(), nullptr};
      if (format != WeightFormat::kF32) {
        stored = std::make_unique<StoredWeight>(format, w.data(), s.N, s.K);
        matrix = stored->view();
      }
      std::vector<float> as_stored(w.size());  // what the kernel multiplies by
      matrix.widen(0, s.N, s.K, as_stored.data());
      for (SimdLevel level : runnable_simd_levels())
        expect_equals_double_product(
            [&](float* y, bool accumulate, bool relu) {
              skinny_gemm(level, x.data(), matrix, y, s.M, s.N, s.K, accumulate, relu);
            },
            x, as_stored, y0, s.M, s.N, s.K,
            std::string(simd_level_name(level)) + " " + weight_format_name(format));
    }
}

TEST(SkinnyGemm, RowResultDoesNotDependOnTheOtherRows) {
  constexpr int M = 23, N = 70, K = 768;
  const auto x = random_floats(size_t(M) * K, 4);
  const auto w = random_floats(size_t(N) * K, 5);
  for (SimdLevel level : runnable_simd_levels()) {
    std::vector<float> all(size_t(M) * N), one(N);
    skinny_gemm(level, x.data(), w.data(), all.data(), M, N, K, false, false);
    for (int m = 0; m < M; ++m) {
      skinny_gemm(level, x.data() + size_t(m) * K, w.data(), one.data(), 1, N, K, false, false);
      for (int n = 0; n < N; ++n)
        ASSERT_EQ(one[n], all[size_t(m) * N + n])
            << simd_level_name(level) << ": row " << m << " alone differs at column " << n;
    }
  }
}

}  // namespace
}  // namespace moe
