#include "model/generation.hpp"

#include <chrono>

namespace moe {

int greedy_token(const float* logits, int vocab) {
  int best = 0;
  for (int v = 1; v < vocab; ++v)
    if (logits[v] > logits[best]) best = v;
  return best;
}

std::vector<std::vector<int>> generate_greedy(SwitchModel& m, const Batch& batch,
                                              int max_new_tokens, GenerationTimings* timings) {
  using clock = std::chrono::steady_clock;
  const ModelConfig& c = m.config;
  const int B = batch.sequences;
  auto t0 = clock::now();
  const EncoderOutput enc = encode(m, batch);
  auto t1 = clock::now();
  std::vector<SequenceCache> caches = start_decoder(m, enc, max_new_tokens + 1);
  const std::vector<SequenceCache*> sequences = all_of(caches);
  std::vector<std::vector<int>> out(B);
  std::vector<uint8_t> finished(B, 0);
  std::vector<int> tokens(B, c.decoder_start_token_id);
  std::vector<float> logits;
  int steps = 0;
  for (int step = 0; step < max_new_tokens; ++step) {
    // Finished sequences keep feeding pad, as HF does; rows never interact, so this only costs
    // time.
    decode(m, sequences, tokens, 1, /*last_only=*/true, logits);
    ++steps;
    int unfinished = 0;
    for (int b = 0; b < B; ++b) {
      if (finished[b]) {
        tokens[b] = c.pad_token_id;
        continue;
      }
      const int best = greedy_token(logits.data() + size_t(b) * c.vocab_size, c.vocab_size);
      tokens[b] = best;
      out[b].push_back(best);
      if (best == c.eos_token_id)
        finished[b] = 1;
      else
        ++unfinished;
    }
    if (unfinished == 0) break;
  }
  auto t2 = clock::now();
  if (timings) {
    timings->encode_seconds = std::chrono::duration<double>(t1 - t0).count();
    timings->decode_seconds = std::chrono::duration<double>(t2 - t1).count();
    timings->decode_steps = steps;
  }
  return out;
}

}  // namespace moe
