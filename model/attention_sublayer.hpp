// The attention sublayer of a block, shared by the encoder's self-attention and the decoder's
// self- and cross-attention: x += o(attention(q(rms_norm(x)), keys, values)). It comes in steps
// so that the decoder can put the new keys and values into its cache, and attend each sequence
// over its own cache, in between.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/attention.hpp"
#include "model/switch_model.hpp"

namespace moe {

// ws.normed = rms_norm(x[T, d_model]); ws.q = q(normed) and, when with_kv, ws.k and ws.v too.
void normalize_and_project(SwitchModel& m, const float* norm_weight, const AttentionWeights& w,
                           const float* x, int T, bool with_kv);

// Where sequences' keys and values are: sequence i's rows start at i * seq_stride floats.
struct KeyValues {
  const float* keys;
  const float* values;
  size_t seq_stride;
  const float* bias = nullptr;     // [H, queries, keys], shared by the sequences
  const uint8_t* valid = nullptr;  // [sequences, valid_stride] key padding mask
  size_t valid_stride = 0;
};

// ws.ctx rows of sequences first..first+count-1 (shape.queries rows each, taken from ws.q) =
// their attention over kv, whose sequence 0 is `first`.
void attend_sequences(SwitchModel& m, const AttentionShape& shape, int first, int count,
                      const KeyValues& kv);

// x[T, d_model] += o(ws.ctx).
void project_out_and_add(SwitchModel& m, const AttentionWeights& w, int T, float* x);

// Both for B sequences laid out alike: x += o(attention of ws.q over kv).
void attend_and_add(SwitchModel& m, const AttentionWeights& w, const AttentionShape& shape, int B,
                    const KeyValues& kv, float* x);

}  // namespace moe
