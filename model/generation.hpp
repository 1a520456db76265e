// Greedy generation: encode once, then decode one token per step with the KV cache until every
// sequence has produced eos or max_new_tokens is reached (Hugging Face's greedy search).
#pragma once

#include <vector>

#include "model/decoder.hpp"

namespace moe {

struct GenerationTimings {
  double encode_seconds = 0;
  double decode_seconds = 0;
  int decode_steps = 0;
};

// The greedy choice of one row of logits[vocab]: the first largest (as torch.argmax).
int greedy_token(const float* logits, int vocab);

// One greedy decoder step: feeds each sequence its token and returns its next one (the first
// largest logit over the whole vocabulary, wherever the executor computes its columns).
std::vector<int> decode_greedy(SwitchModel& m, const std::vector<SequenceCache*>& sequences,
                               const std::vector<int>& tokens);

// Returns per sequence the generated ids, without the decoder start token, ending with eos when
// one was produced.
std::vector<std::vector<int>> generate_greedy(SwitchModel& m, const Batch& batch,
                                              int max_new_tokens,
                                              GenerationTimings* timings = nullptr);

}  // namespace moe
