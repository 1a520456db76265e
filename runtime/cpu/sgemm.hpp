// The float32 GEMM of many rows on the calling thread: oneDNN's, whose kernels follow the CPU's
// vector units (AVX-512 where there is AVX-512). Row-major; b is [N, K] when b_transposed (a
// Linear layer's weight, attention's keys), else [K, N] (attention's values).
#pragma once

namespace moe {

// c[M, N] = a[M, K] · op(b) + beta · c, with row strides lda, ldb, ldc.
void sgemm_one_thread(bool b_transposed, int M, int N, int K, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace moe
