#include "runtime/cpu/int8_gemm.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/cpu/weight_matrix.hpp"

namespace moe {

bool int8_vnni_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return available;
}

AlignedVector<int8_t> pack_int8_panels(const int8_t* q, size_t N, size_t K) {
  constexpr size_t P = kInt8PanelColumns;
  const size_t K4 = (K + 3) / 4 * 4;
  AlignedVector<int8_t> panels((N + P - 1) / P * P * K4, 0);
  for (size_t n = 0; n < N; ++n)
    for (size_t k = 0; k < K; ++k)
      panels[n / P * P * K4 + k / 4 * (P * 4) + n % P * 4 + k % 4] = q[n * K + k];
  return panels;
}

void quantize_rows(const float* x, int M, int K, QuantizedRows& out) {
  out.M = M;
  out.K = K;
  out.stride = (K + 63) / 64 * 64;
  out.q.assign(size_t(M) * out.stride, 128);
  out.scale.resize(M);
  for (int m = 0; m < M; ++m) {
    const float* row = x + size_t(m) * K;
    const float largest = largest_magnitude(row, K);
    uint8_t* q = out.q.data() + size_t(m) * out.stride;
    if (!(largest > 0) || !std::isfinite(largest)) {
      // Zeros quantise to the zero point; a non-finite value makes the row's results NaN, as
      // its products are not finite in float32 either.
      out.scale[m] = largest == 0 ? 1.0f : std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float scale = largest / 127.0f, inverse = 1.0f / scale;
    out.scale[m] = scale;
    for (int k = 0; k < K; ++k) {  // to nearest, halves away from zero
      const float v = std::min(std::fabs(row[k]) * inverse + 0.5f, 127.0f);
      q[k] = uint8_t(128 + (row[k] < 0 ? -int(v) : int(v)));
    }
  }
}

}  // namespace moe
