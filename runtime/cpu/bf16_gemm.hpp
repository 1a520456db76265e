// y[M, N] = x[M, K] · w[N, K]^T with bfloat16 weights and bfloat16 activations, summed in float32:
// the product that "--weights bf16" runs where the CPU has AVX-512 BF16 (vdpbf16ps: 32 products
// summed into 16 float32 lanes per instruction, twice the multiply-adds of a float32 FMA, and the
// weights used as loaded, without widening).
//
// Each row of x is rounded to bfloat16 (to nearest even) on its own, so a row's result depends on
// that row alone, never on the other rows of the call nor on how columns are split over threads.
#pragma once

#include <cstdint>

#include "runtime/cpu/weight_matrix.hpp"

namespace moe {

// True where this CPU runs the kernel (AVX-512 F, BW and BF16).
bool bf16_dot_available();

// Rows of x in bfloat16, K rounded up to 32 per row (zeros past K).
struct Bf16Rows {
  int M = 0, K = 0, stride = 0;
  AlignedVector<uint16_t> values;
};
void round_rows_to_bf16(const float* x, int M, int K, Bf16Rows& out);

// Columns [n_begin, n_end) of y = x · w^T (+ y when accumulate, then max(y, 0) when relu), w
// bfloat16 [N, K]. Needs bf16_dot_available().
void bf16_gemm_dot(const Bf16Rows& x, const uint16_t* w, float* y, int N, bool accumulate,
                   bool relu, int n_begin, int n_end);

}  // namespace moe
