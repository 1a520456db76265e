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
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

std::vector<SimdLevel> runnable_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::kBaseline, SimdLevel::kAvx2, SimdLevel::kAvx512})
    if (l <= best_simd_level()) levels.push_back(l);
  return levels;
}

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
      for (SimdLevel level : runnable_levels())
        for (int mode = 0; mode < 4; ++mode) {
          const bool accumulate = mode & 1, relu = mode & 2;
          for (int threads : {1, 2}) {
            auto y = y0;
            ThreadPool::instance().resize(threads);
            skinny_gemm(level, x.data(), matrix, y.data(), s.M, s.N, s.K, accumulate, relu);
            for (int m = 0; m < s.M; ++m)
              for (int n = 0; n < s.N; ++n) {
                double want = accumulate ? y0[size_t(m) * s.N + n] : 0.0;
                for (int k = 0; k < s.K; ++k)
                  want += double(x[size_t(m) * s.K + k]) * as_stored[size_t(n) * s.K + k];
                if (relu) want = std::max(want, 0.0);
                ASSERT_NEAR(y[size_t(m) * s.N + n], want, 1e-5 * std::sqrt(double(s.K)) + 1e-6)
                    << simd_level_name(level) << " " << weight_format_name(format) << " M=" << s.M
                    << " N=" << s.N << " K=" << s.K << " accumulate=" << accumulate
                    << " relu=" << relu << " threads=" << threads << " at (" << m << ", " << n
                    << ")";
              }
          }
          ThreadPool::instance().resize(1);
        }
    }
}

TEST(SkinnyGemm, RowResultDoesNotDependOnTheOtherRows) {
  constexpr int M = 23, N = 70, K = 768;
  const auto x = random_floats(size_t(M) * K, 4);
  const auto w = random_floats(size_t(N) * K, 5);
  for (SimdLevel level : runnable_levels()) {
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
