// y[M, N] = x[M, K] · w[N, K]^T with int8 weights and int8 activations: the product that
// "--weights int8" runs where the CPU has AVX-512 VNNI (vpdpbusd: 64 byte products summed into 16
// 32-bit lanes per instruction, four times the multiply-adds of a float32 FMA).
//
// Each row of x is quantised on the fly, symmetric per row: q = round(x / s) with s = max|x| / 127,
// stored as q + 128 (unsigned, as vpdpbusd takes it); w holds int8 weights with one scale per
// output row (runtime/cpu/weight_matrix.hpp) and each row's sum of weights, so that
//   y[m, n] = s_x[m] · s_w[n] · (Σ_k (q[m, k] + 128) · w[n, k] − 128 · Σ_k w[n, k]).
// The sums are exact in int32, so a row's result depends on that row alone (never on the other
// rows of the call, nor on how the columns are split over threads).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cpu/weight_matrix.hpp"

namespace moe {

// True where this CPU runs the VNNI kernel (AVX-512 F, BW and VNNI).
bool int8_vnni_available();

// Rows of x quantised for the kernel: K rounded up to 64 bytes per row (padding holds the zero
// point 128, which meets zero weights), and one scale per row.
struct QuantizedRows {
  int M = 0, K = 0, stride = 0;
  std::vector<uint8_t> q;
  std::vector<float> scale;
};
void quantize_rows(const float* x, int M, int K, QuantizedRows& out);

// Columns [n_begin, n_end) of y = x · w^T (+ y when accumulate, then max(y, 0) when relu), w int8
// [N, K] with per-row scales and sums. Needs int8_vnni_available().
void int8_gemm_vnni(const QuantizedRows& x, const int8_t* w, const float* w_scales,
                    const int32_t* w_sums, float* y, int N, bool accumulate, bool relu, int n_begin,
                    int n_end);

// The same product from weights laid out in panels for vpdpbusd: panel p holds outputs
// 16p..16p+15, and for each group of four k their 16 × 4 bytes side by side (K rounded up to 4
// and N to 16 with zeros). Four activation bytes are broadcast against a panel's 64 bytes, so the
// weights stream as one contiguous run; the sums are the same exact int32, so the results equal
// int8_gemm_vnni's (to the bit, but for where that kernel's tail fuses the add of y). n_begin is a
// multiple of 16.
constexpr int kInt8PanelColumns = 16;
AlignedVector<int8_t> pack_int8_panels(const int8_t* q, size_t N, size_t K);
void int8_gemm_vnni_panels(const QuantizedRows& x, const int8_t* panels, const float* w_scales,
                           const int32_t* w_sums, float* y, int N, bool accumulate, bool relu,
                           int n_begin, int n_end);

// True where the CPU has AMX-TILE and AMX-INT8 besides VNNI and the kernel lets this process use
// the tiles (asked once, on the first call).
bool int8_amx_available();

// The same product from the same panels on AMX tiles (tdpbusd: 16 rows × 16 outputs × 64 k per
// instruction): the same exact int32 sums and the same float epilogue, so the same bits as
// int8_gemm_vnni_panels. Needs int8_amx_available() and K a multiple of 64.
void int8_gemm_amx_panels(const QuantizedRows& x, const int8_t* panels, const float* w_scales,
                          const int32_t* w_sums, float* y, int N, bool accumulate, bool relu,
                          int n_begin, int n_end);

}  // namespace moe
