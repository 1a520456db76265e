// The check the CPU product kernels share: y = x · w^T (+ y0 when accumulate), then ReLU when
// asked, against the same product in double precision, in every mode (accumulate, ReLU) and on one
// thread and two.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "runtime/thread_pool.hpp"

namespace moe {

// `product(y, accumulate, relu)` runs the kernel into y (holding y0 on entry); w[N, K] is what the
// kernel multiplies by (float32, as stored); `what` names the kernel in a failure.
inline void expect_equals_double_product(
    const std::function<void(float* y, bool accumulate, bool relu)>& product,
    const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& y0, int M,
    int N, int K, const std::string& what) {
  for (int mode = 0; mode < 4; ++mode) {
    const bool accumulate = mode & 1, relu = mode & 2;
    for (int threads : {1, 2}) {
      auto y = y0;
      ThreadPool::instance().resize(threads);
      product(y.data(), accumulate, relu);
      ThreadPool::instance().resize(1);
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
          double want = accumulate ? y0[size_t(m) * N + n] : 0.0;
          for (int k = 0; k < K; ++k) want += double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
          if (relu) want = std::max(want, 0.0);
          ASSERT_NEAR(y[size_t(m) * N + n], want, 1e-5 * std::sqrt(double(K)) + 1e-6)
              << what << " M=" << M << " N=" << N << " K=" << K << " accumulate=" << accumulate
              << " relu=" << relu << " threads=" << threads << " at (" << m << ", " << n << ")";
        }
    }
  }
}

}  // namespace moe
