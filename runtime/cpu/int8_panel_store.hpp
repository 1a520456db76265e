// The float outputs of int8 products from their exact int32 dot products, shared by the panel
// kernels (int8_gemm_vnni.cpp, int8_gemm_amx.cpp) so that both write the same bits. Include only
// from files compiled with AVX-512 F and BW.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace moe {

// Up to 16 outputs of one row (`lanes` of them, from out): s_x · s_w times the exact dot less
// 128 · Σw (x was stored as q + 128), plus y when accumulate, then max(·, 0) when relu.
inline void store_int8_outputs(__m512i raw_dots, float x_scale, const float* w_scales,
                               const int32_t* w_sums, float* out, int lanes, bool accumulate,
                               bool relu) {
  const __mmask16 mask = lanes >= 16 ? __mmask16(0xffff) : __mmask16((1u << lanes) - 1);
  const __m512i dots =
      _mm512_sub_epi32(raw_dots, _mm512_slli_epi32(_mm512_maskz_loadu_epi32(mask, w_sums), 7));
  // One rounding for the scale times the sum plus y: an explicit fused multiply-add, so that no
  // compiler's contraction choice can make the two kernels differ.
  __m512 v =
      _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_maskz_loadu_ps(mask, w_scales)),
                      _mm512_cvtepi32_ps(dots),
                      accumulate ? _mm512_maskz_loadu_ps(mask, out) : _mm512_setzero_ps());
  if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  _mm512_mask_storeu_ps(out, mask, v);
}

}  // namespace moe
