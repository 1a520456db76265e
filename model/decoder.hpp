// The Switch Transformer decoder with a key/value cache: causal self-attention (relative bias,
// unidirectional), cross-attention over the encoder states, dense or sparse feed-forward, final
// norm and lm_head.
#pragma once

#include <vector>

#include "model/encoder.hpp"

namespace moe {

struct DecoderCache {
  int sequences = 0;
  int max_length = 0;                                // positions the self-attention cache holds
  int length = 0;                                    // positions filled
  std::vector<std::vector<float>> self_k, self_v;    // per block [sequences, max_length, inner]
  std::vector<std::vector<float>> cross_k, cross_v;  // per block [sequences, enc_len, inner]
};

// Projects the encoder states into every block's cross-attention keys and values once.
DecoderCache start_decoder(SwitchModel& m, const EncoderOutput& encoder, int max_length);

// Feeds `n` new tokens per sequence (tokens[sequences * n]); writes logits for every new position
// [sequences * n, vocab], or only for the last position of each sequence [sequences, vocab].
void decode(SwitchModel& m, DecoderCache& cache, const EncoderOutput& encoder,
            const std::vector<int>& tokens, int n, bool last_only, std::vector<float>& logits);

}  // namespace moe
