// The Switch Transformer encoder: embeddings, blocks of self-attention and (dense or sparse)
// feed-forward, final RMS norm.
#pragma once

#include <vector>

#include "model/switch_model.hpp"

namespace moe {

struct EncoderOutput {
  int sequences = 0;
  int seq_len = 0;
  std::vector<float> hidden;   // [sequences * seq_len, d_model], the final-normed states
  std::vector<uint8_t> valid;  // [sequences * seq_len]
};

EncoderOutput encode(SwitchModel& m, const Batch& batch);

}  // namespace moe
