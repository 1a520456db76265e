// y[M, N] = x[M, K] · w[N, K]^T for the few rows of a decode step, reading each weight once.
//
// Decode multiplies a handful of rows by large weight matrices: the time goes into streaming the
// weights from memory, and sgemm's packing (a copy of the whole matrix per call) only adds to it.
// Hugging Face's layout w[N, K] already lays each output's weights out contiguously, so this
// kernel needs no packing: it reads NR weight rows at a time from memory, once, and multiplies them
// with every row of x (held in cache) in register blocks of MR × NR dot products.
//
// Each output is one dot product summed in the same order whatever M is and wherever its row
// falls in a block, so a row's result does not depend on which other rows share the call (a
// micro-batch gives the same bits as the whole batch). The vector width is chosen at run time from
// the CPU: AVX-512, AVX2 + FMA, or the baseline SSE build; each gives its own (fixed) rounding.
#pragma once

#include <string>
#include <vector>

#include "runtime/cpu/weight_matrix.hpp"

namespace moe {

enum class SimdLevel { kBaseline, kAvx2, kAvx512 };

// The widest level this CPU runs, and every level it runs (the narrowest first).
SimdLevel best_simd_level();
std::vector<SimdLevel> runnable_simd_levels();
const char* simd_level_name(SimdLevel level);

// y = x · w^T (+ y when accumulate), then max(y, 0) when relu. Rows of x and y are K and N floats
// apart. When parallel, the N outputs are split over the process's ThreadPool (the same bits).
void skinny_gemm(SimdLevel level, const float* x, const WeightMatrix& w, float* y, int M, int N,
                 int K, bool accumulate, bool relu, bool parallel = true);
// Threads split a product's outputs at multiples of this many weight rows, a multiple of every
// level's block, so that a split gives the bits of the whole call.
constexpr int kSkinnyColumnsPerRun = 64;

// The outputs n_begin..n_end-1 of the above on the calling thread (y keeps its N-float rows): the
// same bits as those outputs of a whole call.
void skinny_gemm_columns(SimdLevel level, const float* x, const WeightMatrix& w, float* y, int M,
                         int N, int K, bool accumulate, bool relu, int n_begin, int n_end);
inline void skinny_gemm(SimdLevel level, const float* x, const float* w, float* y, int M, int N,
                        int K, bool accumulate, bool relu, bool parallel = true) {
  skinny_gemm(level, x, WeightMatrix{WeightFormat::kF32, w, nullptr}, y, M, N, K, accumulate, relu,
              parallel);
}

}  // namespace moe
