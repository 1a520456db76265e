// y[M, N] = x[M, K] · w[N, K]^T for float32 weights laid out once, at load, in panels of
// kPanelColumns outputs: panel p holds w[p·48 .. p·48 + 47, k] for k = 0..K-1, the 48 weights of
// one k side by side (a last, partial panel is padded with zero rows).
//
// The kernel broadcasts each x[m, k] against a panel's 48 weights of that k (three AVX-512 vectors)
// into register blocks of rows × 48 outputs, so a block reads its weights once for all its rows
// with no horizontal sums: 206 GF/s at 32 rows and 227 at 64 on one AVX-512 core, where the
// dot-product kernel on HF's row layout (skinny_gemm.hpp) reaches 148 and 173, and oneDNN 112 and
// 156 (docs/BENCHMARKS.md, section 5). Every output is one chain of fused multiply-adds over
// k = 0, 1, …, K-1 in order, whatever M, the block it falls in or the thread that computes it: a
// row's result has the same bits alone, in a micro-batch or in the whole batch.
#pragma once

#include <cstddef>

#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/cpu/weight_matrix.hpp"

namespace moe {

constexpr int kPanelColumns = 48;

// The panels of w[N, K]: ceil(N / 48) · K · 48 floats.
AlignedVector<float> pack_panels(const float* w, size_t N, size_t K);

// y = x · w^T (+ y when accumulate), then max(y, 0) when relu, with `panels` the packed weights of
// at least N outputs (N may end inside a panel). When parallel, whole panels are split over the
// process's ThreadPool (the same bits).
void panel_gemm(SimdLevel level, const float* x, const float* panels, float* y, int M, int N, int K,
                bool accumulate, bool relu, bool parallel = true);

// The outputs n_begin..n_end-1 of the above on the calling thread (n_begin a multiple of 48; y
// keeps its N-float rows): the same bits as those outputs of a whole call.
void panel_gemm_columns(SimdLevel level, const float* x, const float* panels, float* y, int M,
                        int N, int K, bool accumulate, bool relu, int n_begin, int n_end);

}  // namespace moe
