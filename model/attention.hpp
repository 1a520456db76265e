// T5-style attention: no 1/sqrt(d) scaling, a learned relative position bias (held by the first
// block and shared by all), key padding masks and, in the decoder, causal masking.
#pragma once

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

}  // namespace moe
