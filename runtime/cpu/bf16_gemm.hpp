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

// The same product from weights laid out in panels for vdpbf16ps: panel p holds outputs
// 16p..16p+15, and for each pair of k their 16 × 2 bfloat16 side by side (K rounded up to 2 and N
// to 16 with zeros). A pair of activations is broadcast against a panel's 64 bytes, so the weights
// stream as one contiguous run; each output is one chain over the pairs of k in order, so a row's
// result does not depend on the rows beside it (its bits differ from bf16_gemm_dot's, which sums
// 16 lanes at the end). n_begin is a multiple of 16.
constexpr int kBf16PanelColumns = 16;
AlignedVector<uint16_t> pack_bf16_panels(const uint16_t* b, size_t N, size_t K);
void bf16_gemm_dot_panels(const Bf16Rows& x, const uint16_t* panels, float* y, int N,
                          bool accumulate, bool relu, int n_begin, int n_end);

}  // namespace moe
