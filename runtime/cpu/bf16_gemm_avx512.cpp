// The AVX-512 BF16 kernel behind bf16_gemm.hpp, compiled with AVX-512 F/BW/BF16
// (runtime/CMakeLists.txt) and called only where the CPU has them. Its blocks are those of the
// int8 kernel (int8_gemm_vnni.cpp): 6 rows × 4 weight rows, 8 weight rows for one or two rows.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu/bf16_gemm.hpp"

namespace moe {
namespace {

// Plain vector types for the accumulators and operands: arrays of the may_alias __m512 types
// were kept in memory by GCC.
typedef float F32x16 __attribute__((vector_size(64)));
typedef short I16x32 __attribute__((vector_size(64)));

// acc + the two products of each lane's pair of bfloat16.
inline F32x16 dpbf16(F32x16 acc, I16x32 x, I16x32 w) {
#if defined(__clang__)
  return F32x16(_mm512_dpbf16_ps(__m512(acc), __m512bh(x), __m512bh(w)));
#else
  return __builtin_ia32_dpbf16ps_v16sf(acc, x, w);
#endif
}

// The lane sums of four accumulators at once (a 4 × 4 transpose that adds as it goes).
inline __m128 lane_sums4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m512 t01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 t23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512 u = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t01), _mm512_castps_pd(t23))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t01), _mm512_castps_pd(t23))));
  const __m512 v = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 w = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(w);
}

// One accumulator's lane sum in the order lane_sums4 gives every one of its four, so that a column
// sums alike whether it falls in a group of four or in the tail (floats: order changes bits).
inline float lane_sum(__m512 v) { return _mm_cvtss_f32(lane_sums4(v, v, v, v)); }

// Rows [m0, m0 + MR) of x against weight rows [0, NR) of w (K bfloat16 each).
template <int MR, int NR>
void block(const Bf16Rows& x, int m0, const uint16_t* w, int K, float* y, int N, bool accumulate,
           bool relu) {
  F32x16 acc[MR][NR] = {};
  const uint16_t* xb = x.values.data() + size_t(m0) * x.stride;
  const uint16_t* next = w + size_t(NR) * K;
  int k = 0;
  for (; k + 32 <= K; k += 32) {  // plain loads (a masked load here kept acc in memory)
    I16x32 wv[NR];
    for (int j = 0; j < NR; ++j) {
      wv[j] = I16x32(_mm512_loadu_si512(w + size_t(j) * K + k));
      __builtin_prefetch(next + size_t(j) * K + k);
    }
    for (int i = 0; i < MR; ++i) {
      const I16x32 xv = I16x32(_mm512_loadu_si512(xb + size_t(i) * x.stride + k));
      for (int j = 0; j < NR; ++j) acc[i][j] = dpbf16(acc[i][j], xv, wv[j]);
    }
  }
  if (k < K) {  // the tail of K: weights past K loaded as zeros (x is zero there too)
    const __mmask32 mask = (__mmask32(1) << (K - k)) - 1;
    I16x32 wv[NR];
    for (int j = 0; j < NR; ++j)
      wv[j] = I16x32(_mm512_maskz_loadu_epi16(mask, w + size_t(j) * K + k));
    for (int i = 0; i < MR; ++i) {
      const I16x32 xv = I16x32(_mm512_loadu_si512(xb + size_t(i) * x.stride + k));
      for (int j = 0; j < NR; ++j) acc[i][j] = dpbf16(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* out = y + size_t(m0 + i) * N;
    int j = 0;
    if constexpr (NR % 4 == 0)
      for (; j < NR; j += 4) {
        __m128 v = lane_sums4(__m512(acc[i][j]), __m512(acc[i][j + 1]), __m512(acc[i][j + 2]),
                              __m512(acc[i][j + 3]));
        if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(out + j));
        if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
        _mm_storeu_ps(out + j, v);
      }
    for (; j < NR; ++j) {
      float v = lane_sum(__m512(acc[i][j]));
      if (accumulate) v += out[j];
      out[j] = relu ? std::max(v, 0.0f) : v;
    }
  }
}

constexpr int kMR = 6;

template <int NR, int R = kMR - 1>
void last_rows(int rows, const Bf16Rows& x, int m, const uint16_t* wn, float* y, int N,
               bool accumulate, bool relu) {
  if constexpr (R > 0) {
    if (rows == R) return block<R, NR>(x, m, wn, x.K, y, N, accumulate, relu);
    last_rows<NR, R - 1>(rows, x, m, wn, y, N, accumulate, relu);
  }
}

template <int NR>
void column_block(const Bf16Rows& x, const uint16_t* w, float* y, int N, int n, bool accumulate,
                  bool relu) {
  const uint16_t* wn = w + size_t(n) * x.K;
  int m = 0;
  for (; m + kMR <= x.M; m += kMR) block<kMR, NR>(x, m, wn, x.K, y + n, N, accumulate, relu);
  last_rows<NR>(x.M - m, x, m, wn, y + n, N, accumulate, relu);
}

// Steps of k prefetched ahead in each panel: on an Intel Xeon core, 8 rows read at 51-67% of the
// memory's rate without it and 69-84% with it (docs/BENCHMARKS.md section 11).
constexpr int kPanelAhead = 32;

// Rows [m0, m0 + MR) against V panels from `panel` (panel_elements apart): the first `columns`
// outputs of them written, at 16 per vector.
template <int MR, int V>
void panel_block(const Bf16Rows& x, int m0, const uint16_t* panel, size_t panel_elements, float* y,
                 int N, int columns, bool accumulate, bool relu) {
  F32x16 acc[MR][V] = {};
  const uint16_t* xb = x.values.data() + size_t(m0) * x.stride;
  const int K2 = (x.K + 1) / 2 * 2;  // within the row's stride (padded to 32 with zeros)
  for (int k = 0; k < K2; k += 2) {
    I16x32 wv[V];
    for (int j = 0; j < V; ++j)  // the line kPanelAhead steps on (as panel_gemm_kernel.inc)
      __builtin_prefetch(panel + j * panel_elements + size_t(k + kPanelAhead * 2) * 16, 0, 2);
    for (int j = 0; j < V; ++j)
      wv[j] = I16x32(_mm512_loadu_si512(panel + j * panel_elements + size_t(k) * 16));
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, xb + size_t(i) * x.stride + k, 4);
      const I16x32 xv = I16x32(_mm512_set1_epi32(pair));
      for (int j = 0; j < V; ++j) acc[i][j] = dpbf16(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < V && 16 * j < columns; ++j) {
      const int c0 = 16 * j;
      const __mmask16 mask =
          columns - c0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (columns - c0)) - 1);
      float* out = y + size_t(m0 + i) * N + c0;
      __m512 v = __m512(acc[i][j]);
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out));
      if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(out, mask, v);
    }
}

constexpr int kPanelMR = 8;  // 8 rows × 3 panels: 24 accumulators, 3 weight vectors, x's broadcast

// The last rows (fewer than kPanelMR): one block of exactly `rows` rows.
template <int V, int R = kPanelMR - 1>
void panel_last_rows(int rows, const Bf16Rows& x, int m, const uint16_t* panel,
                     size_t panel_elements, float* y, int N, int columns, bool accumulate,
                     bool relu) {
  if constexpr (R > 0) {
    if (rows == R)
      return panel_block<R, V>(x, m, panel, panel_elements, y, N, columns, accumulate, relu);
    panel_last_rows<V, R - 1>(rows, x, m, panel, panel_elements, y, N, columns, accumulate, relu);
  }
}

template <int V>
void panel_rows(const Bf16Rows& x, const uint16_t* panel, size_t panel_elements, float* y, int N,
                int columns, bool accumulate, bool relu) {
  int m = 0;
  for (; m + kPanelMR <= x.M; m += kPanelMR)
    panel_block<kPanelMR, V>(x, m, panel, panel_elements, y, N, columns, accumulate, relu);
  panel_last_rows<V>(x.M - m, x, m, panel, panel_elements, y, N, columns, accumulate, relu);
}

}  // namespace

void bf16_gemm_dot_panels(const Bf16Rows& x, const uint16_t* panels, float* y, int N,
                          bool accumulate, bool relu, int n_begin, int n_end) {
  const size_t panel_elements = size_t(kBf16PanelColumns) * ((x.K + 1) / 2 * 2);
  for (int n = n_begin; n < n_end; n += 3 * kBf16PanelColumns) {
    const int columns = std::min(3 * kBf16PanelColumns, n_end - n);
    const uint16_t* panel = panels + size_t(n / kBf16PanelColumns) * panel_elements;
    // Only the panels that exist: the last of a matrix may hold one or two.
    if (columns > 2 * kBf16PanelColumns)
      panel_rows<3>(x, panel, panel_elements, y + n, N, columns, accumulate, relu);
    else if (columns > kBf16PanelColumns)
      panel_rows<2>(x, panel, panel_elements, y + n, N, columns, accumulate, relu);
    else
      panel_rows<1>(x, panel, panel_elements, y + n, N, columns, accumulate, relu);
  }
}

void bf16_gemm_dot(const Bf16Rows& x, const uint16_t* w, float* y, int N, bool accumulate,
                   bool relu, int n_begin, int n_end) {
  const bool few = x.M <= 2;  // 8 weight rows per block keep more streams in flight
  int n = n_begin;
  for (; n + (few ? 8 : 4) <= n_end; n += few ? 8 : 4) {
    if (few)
      column_block<8>(x, w, y, N, n, accumulate, relu);
    else
      column_block<4>(x, w, y, N, n, accumulate, relu);
  }
  for (; n < n_end; ++n) column_block<1>(x, w, y, N, n, accumulate, relu);
}

}  // namespace moe
