// The VNNI kernel behind int8_gemm.hpp, compiled with AVX-512 F/BW/VNNI (runtime/CMakeLists.txt)
// and called only where the CPU has them.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/int8_panel_store.hpp"

namespace moe {
namespace {

// Accumulators and operands in a plain vector type: __m512i is declared may_alias, which kept
// GCC from holding arrays of it in registers (every step stored them to the stack).
typedef int I32x16 __attribute__((vector_size(64)));

// acc + the four byte products of each lane; on GCC its builtin on the plain vector type (the
// intrinsic's casts to __m512i kept arrays of accumulators in memory).
inline I32x16 dpbusd(I32x16 acc, I32x16 x, I32x16 w) {
#if defined(__clang__)
  return I32x16(_mm512_dpbusd_epi32(__m512i(acc), __m512i(x), __m512i(w)));
#else
  return __builtin_ia32_vpdpbusd_v16si(acc, x, w);
#endif
}

// The 16 lanes' sum (exact in int32).
inline int32_t lane_sum(__m512i v) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  int32_t sum = 0;
  for (int32_t lane : lanes) sum += lane;
  return sum;
}

// The lane sums of four accumulators at once, as four int32: interleave and add within 128-bit
// lanes (a 4 × 4 transpose that sums as it goes), then add the four 128-bit lanes. At K = 768 a
// block has only 12 steps, and summing each accumulator on its own cost as much as the steps.
inline __m128i lane_sums4(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  const __m512i t01 =
      _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
  const __m512i t23 =
      _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
  // per 128-bit lane: [a0, a1, a2, a3] partial sums
  const __m512i u =
      _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
  const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512i w = _mm512_add_epi32(v, _mm512_shuffle_i32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castsi512_si128(w);
}

// Rows [0, MR) of x against weight rows [0, NR) of w (K bytes each).
template <int MR, int NR>
void block(const QuantizedRows& x, int m0, const int8_t* w, int K, const float* w_scales,
           const int32_t* w_sums, float* y, int N, bool accumulate, bool relu) {
  I32x16 acc[MR][NR] = {};
  const uint8_t* xq = x.q.data() + size_t(m0) * x.stride;
  const int8_t* next = w + size_t(NR) * K;
  // 64 bytes of K per step, plain loads (a masked load in the loop made GCC keep acc on the stack).
  int k = 0;
  for (; k + 64 <= K; k += 64) {
    I32x16 wv[NR];
    for (int j = 0; j < NR; ++j) {
      wv[j] = I32x16(_mm512_loadu_si512(w + size_t(j) * K + k));
      __builtin_prefetch(next + size_t(j) * K + k);
    }
    for (int i = 0; i < MR; ++i) {
      const I32x16 xv = I32x16(_mm512_loadu_si512(xq + size_t(i) * x.stride + k));
      for (int j = 0; j < NR; ++j) acc[i][j] = dpbusd(acc[i][j], xv, wv[j]);
    }
  }
  if (k < K) {  // the tail of K, weights loaded with a mask (zeros past K)
    const __mmask64 mask = (__mmask64(1) << (K - k)) - 1;
    I32x16 wv[NR];
    for (int j = 0; j < NR; ++j)
      wv[j] = I32x16(_mm512_maskz_loadu_epi8(mask, w + size_t(j) * K + k));
    for (int i = 0; i < MR; ++i) {
      const I32x16 xv = I32x16(_mm512_loadu_si512(xq + size_t(i) * x.stride + k));
      for (int j = 0; j < NR; ++j) acc[i][j] = dpbusd(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const __m128 row_scale = _mm_set1_ps(x.scale[m0 + i]);
    float* out = y + size_t(m0 + i) * N;
    int j = 0;
    if constexpr (NR % 4 == 0)
      for (; j < NR; j += 4) {  // four outputs at a time, in SSE lanes
        const __m128i dots = _mm_sub_epi32(
            lane_sums4(__m512i(acc[i][j]), __m512i(acc[i][j + 1]), __m512i(acc[i][j + 2]),
                       __m512i(acc[i][j + 3])),
            _mm_slli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w_sums + j)), 7));
        __m128 v =
            _mm_mul_ps(_mm_mul_ps(row_scale, _mm_loadu_ps(w_scales + j)), _mm_cvtepi32_ps(dots));
        if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(out + j));
        if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
        _mm_storeu_ps(out + j, v);
      }
    for (; j < NR; ++j) {
      const int32_t dot = lane_sum(__m512i(acc[i][j])) - 128 * w_sums[j];
      float v = x.scale[m0 + i] * w_scales[j] * float(dot);
      if (accumulate) v += out[j];
      out[j] = relu ? std::max(v, 0.0f) : v;
    }
  }
}

constexpr int kMR = 6;  // rows of x per block: 6 × 4 accumulators, 4 weight vectors, x's vector

// The last rows (fewer than kMR): one block of exactly `rows` rows.
template <int NR, int R = kMR - 1>
void last_rows(int rows, const QuantizedRows& x, int m, const int8_t* wn, const float* scales,
               const int32_t* sums, float* y, int N, bool accumulate, bool relu) {
  if constexpr (R > 0) {
    if (rows == R) return block<R, NR>(x, m, wn, x.K, scales, sums, y, N, accumulate, relu);
    last_rows<NR, R - 1>(rows, x, m, wn, scales, sums, y, N, accumulate, relu);
  }
}

template <int NR>
void column_block(const QuantizedRows& x, const int8_t* w, const float* scales, const int32_t* sums,
                  float* y, int N, int n, bool accumulate, bool relu) {
  const int8_t* wn = w + size_t(n) * x.K;
  int m = 0;
  for (; m + kMR <= x.M; m += kMR)
    block<kMR, NR>(x, m, wn, x.K, scales + n, sums + n, y + n, N, accumulate, relu);
  last_rows<NR>(x.M - m, x, m, wn, scales + n, sums + n, y + n, N, accumulate, relu);
}

// Rows [m0, m0 + MR) against V panels from `panel` (panel_bytes apart): the first `columns`
// outputs of them written, at 16 per vector.
template <int MR, int V>
void panel_block(const QuantizedRows& x, int m0, const int8_t* panel, size_t panel_bytes,
                 const float* w_scales, const int32_t* w_sums, float* y, int N, int columns,
                 bool accumulate, bool relu) {
  I32x16 acc[MR][V] = {};
  const uint8_t* xq = x.q.data() + size_t(m0) * x.stride;
  const int K4 = (x.K + 3) / 4 * 4;  // within the row's stride (padded to 64 with the zero point)
  for (int k = 0; k < K4; k += 4) {
    I32x16 wv[V];
    for (int j = 0; j < V; ++j)
      wv[j] = I32x16(_mm512_loadu_si512(panel + j * panel_bytes + size_t(k) * 16));
    for (int i = 0; i < MR; ++i) {
      int32_t four;
      std::memcpy(&four, xq + size_t(i) * x.stride + k, 4);
      const I32x16 xb = I32x16(_mm512_set1_epi32(four));
      for (int j = 0; j < V; ++j) acc[i][j] = dpbusd(acc[i][j], xb, wv[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < V && 16 * j < columns; ++j) {
      const int c0 = 16 * j;
      store_int8_outputs(__m512i(acc[i][j]), x.scale[m0 + i], w_scales + c0, w_sums + c0,
                         y + size_t(m0 + i) * N + c0, columns - c0, accumulate, relu);
    }
}

constexpr int kPanelMR = 8;  // 8 rows × 3 panels: 24 accumulators, 3 weight vectors, x's broadcast

// The last rows (fewer than kPanelMR): one block of exactly `rows` rows.
template <int V, int R = kPanelMR - 1>
void panel_last_rows(int rows, const QuantizedRows& x, int m, const int8_t* panel,
                     size_t panel_bytes, const float* scales, const int32_t* sums, float* y, int N,
                     int columns, bool accumulate, bool relu) {
  if constexpr (R > 0) {
    if (rows == R)
      return panel_block<R, V>(x, m, panel, panel_bytes, scales, sums, y, N, columns, accumulate,
                               relu);
    panel_last_rows<V, R - 1>(rows, x, m, panel, panel_bytes, scales, sums, y, N, columns,
                              accumulate, relu);
  }
}

template <int V>
void panel_rows(const QuantizedRows& x, const int8_t* panel, size_t panel_bytes,
                const float* scales, const int32_t* sums, float* y, int N, int columns,
                bool accumulate, bool relu) {
  int m = 0;
  for (; m + kPanelMR <= x.M; m += kPanelMR)
    panel_block<kPanelMR, V>(x, m, panel, panel_bytes, scales, sums, y, N, columns, accumulate,
                             relu);
  panel_last_rows<V>(x.M - m, x, m, panel, panel_bytes, scales, sums, y, N, columns, accumulate,
                     relu);
}

}  // namespace

void int8_gemm_vnni_panels(const QuantizedRows& x, const int8_t* panels, const float* w_scales,
                           const int32_t* w_sums, float* y, int N, bool accumulate, bool relu,
                           int n_begin, int n_end) {
  const size_t panel_bytes = size_t(kInt8PanelColumns) * ((x.K + 3) / 4 * 4);
  for (int n = n_begin; n < n_end; n += 3 * kInt8PanelColumns) {
    const int columns = std::min(3 * kInt8PanelColumns, n_end - n);
    const int8_t* panel = panels + size_t(n / kInt8PanelColumns) * panel_bytes;
    float* yn = y + n;
    const float* sc = w_scales + n;
    const int32_t* su = w_sums + n;
    // Only the panels that exist: the last of a matrix may hold one or two.
    if (columns > 2 * kInt8PanelColumns)
      panel_rows<3>(x, panel, panel_bytes, sc, su, yn, N, columns, accumulate, relu);
    else if (columns > kInt8PanelColumns)
      panel_rows<2>(x, panel, panel_bytes, sc, su, yn, N, columns, accumulate, relu);
    else
      panel_rows<1>(x, panel, panel_bytes, sc, su, yn, N, columns, accumulate, relu);
  }
}

void int8_gemm_vnni(const QuantizedRows& x, const int8_t* w, const float* w_scales,
                    const int32_t* w_sums, float* y, int N, bool accumulate, bool relu, int n_begin,
                    int n_end) {
  // One or two rows: 8 weight rows per block keep more weight streams in flight (bandwidth-bound).
  const bool few = x.M <= 2;
  int n = n_begin;
  for (; n + (few ? 8 : 4) <= n_end; n += few ? 8 : 4) {
    if (few)
      column_block<8>(x, w, w_scales, w_sums, y, N, n, accumulate, relu);
    else
      column_block<4>(x, w, w_scales, w_sums, y, N, n, accumulate, relu);
  }
  for (; n < n_end; ++n) column_block<1>(x, w, w_scales, w_sums, y, N, n, accumulate, relu);
}

}  // namespace moe
