#include "runtime/cpu/bf16_gemm.hpp"

#include <algorithm>

namespace moe {

bool bf16_dot_available() {
  static const bool available = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
  }();
  return available;
}

AlignedVector<uint16_t> pack_bf16_panels(const uint16_t* b, size_t N, size_t K) {
  constexpr size_t P = kBf16PanelColumns;
  const size_t K2 = (K + 1) / 2 * 2;
  AlignedVector<uint16_t> panels((N + P - 1) / P * P * K2, 0);
  for (size_t n = 0; n < N; ++n)
    for (size_t k = 0; k < K; ++k)
      panels[n / P * P * K2 + k / 2 * (P * 2) + n % P * 2 + k % 2] = b[n * K + k];
  return panels;
}

void round_rows_to_bf16(const float* x, int M, int K, Bf16Rows& out) {
  out.M = M;
  out.K = K;
  out.stride = (K + 31) / 32 * 32;
  out.values.assign(size_t(M) * out.stride, 0);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k)
      out.values[size_t(m) * out.stride + k] = to_bf16(x[size_t(m) * K + k]);
}

}  // namespace moe
