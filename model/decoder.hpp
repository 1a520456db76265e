// The Switch Transformer decoder with a key/value cache per sequence: causal self-attention
// (relative bias, unidirectional), cross-attention over the sequence's encoder states, dense or
// sparse feed-forward, final norm and lm_head. Each sequence keeps its own position, so sequences
// that started at different times decode together (continuous batching).
#pragma once

#include <vector>

#include "model/encoder.hpp"

namespace moe {

struct SequenceCache {
  int length = 0;                       // positions filled
  int max_length = 0;                   // positions the self-attention cache holds
  int encoder_length = 0;               // the sequence's encoder states (its padding left out)
  std::vector<float> self_k, self_v;    // [decoder blocks, max_length, inner]
  std::vector<float> cross_k, cross_v;  // [decoder blocks, encoder_length, inner]
};

// One cache per sequence of the encoder batch, with the cross-attention keys and values of every
// decoder block projected once from that sequence's encoder states.
std::vector<SequenceCache> start_decoder(SwitchModel& m, const EncoderOutput& encoder,
                                         int max_length);

// Feeds `n` new tokens to each sequence (tokens[sequences.size() * n], sequence-major), each at
// its own position; writes logits for every new position [sequences * n, vocab], or only for the
// last position of each sequence [sequences, vocab].
void decode(SwitchModel& m, const std::vector<SequenceCache*>& sequences,
            const std::vector<int>& tokens, int n, bool last_only, std::vector<float>& logits);

// As decode, up to the lm_head: the final-normed (rescaled when tied) states [rows, d_model] of
// the rows decode gives logits for.
void decode_states(SwitchModel& m, const std::vector<SequenceCache*>& sequences,
                   const std::vector<int>& tokens, int n, bool last_only,
                   std::vector<float>& states);

// Every cache of `caches`, in order.
std::vector<SequenceCache*> all_of(std::vector<SequenceCache>& caches);

}  // namespace moe
