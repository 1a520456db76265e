// T5-style attention: no 1/sqrt(d) scaling, a learned relative position bias (held by the first
// block and shared by all), key padding masks and, in the decoder, causal masking.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "model/config.hpp"

namespace moe {

// T5's bucketing of (key position - query position), as Hugging Face computes it in float32.
int relative_position_bucket(int relative_position, bool bidirectional, int num_buckets,
                             int max_distance);

// bias[H, Q, K] for query positions first_query .. first_query+Q-1 and keys 0..K-1.
// table[buckets, H] is the relative_attention_bias embedding.
void relative_position_bias(const float* table, const ModelConfig& config, bool bidirectional,
                            int first_query, int Q, int K, float* bias);

// Attention for one sequence, all heads. Rows of q/k/v/ctx are [*, H*dkv] with the given row
// strides. bias[H, Q, K] may be null; key_valid[K] may be null (all valid); when causal, query i
// (at absolute position first_query + i) sees keys 0..first_query+i.
struct AttentionShape {
  int heads, d_kv, queries, keys, first_query;
  bool causal;
};
void attend(const AttentionShape& shape, const float* q, int q_stride, const float* k,
            const float* v, int kv_stride, const float* bias, const uint8_t* key_valid, float* ctx,
            int ctx_stride);

// e^x for x ≤ 0 (a score minus the row's largest), in float arithmetic that vectorises (a libm
// call per element does not, and was most of a prefill's softmax): 2^n · e^r with n = round(x /
// ln 2), r = x − n ln 2 in two steps, e^r by the degree-6 polynomial of the Cephes library
// (relative error ≤ 2e-7 on [-ln2/2, ln2/2]). e^0 is exactly 1; below -87.3 (and at -inf, a masked
// key) 0. A loop over it vectorises only without trapping math (model/CMakeLists.txt sets that for
// attention.cpp: nothing reads the floating-point exception flags).
inline float exp_nonpositive(float x) {
  const float xc = std::max(x, -88.0f);  // finite (a masked key's -inf included)
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r -= n * -2.12194440e-4f;
  const float p = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                      4.1665795894e-2f) *
                         r +
                     1.6666665459e-1f) *
                        r +
                    5.0000001201e-1f) *
                   r) *
                      r +
                  r + 1.0f;
  const float scale = std::bit_cast<float>((int32_t(n) + 127) << 23);
  return x < -87.3f ? 0.0f : p * scale;
}

}  // namespace moe
