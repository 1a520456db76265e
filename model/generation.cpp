#include "model/generation.hpp"

#include <chrono>

#include "runtime/error.hpp"

namespace moe {

int greedy_token(const float* logits, int vocab) {
  int best = 0;
  for (int v = 1; v < vocab; ++v)
    if (logits[v] > logits[best]) best = v;
  return best;
}

std::vector<int> decode_greedy(SwitchModel& m, const std::vector<SequenceCache*>& sequences,
                               const std::vector<int>& tokens) {
  const ModelConfig& c = m.config;
  Workspace& ws = m.ws;
  decode_states(m, sequences, tokens, 1, /*last_only=*/true, ws.states);
  const int rows = int(sequences.size()), vocab = c.vocab_size;
  const int kept = m.experts.lm_head_kept(vocab);
  MOE_CHECK(kept >= 1 && kept <= vocab, "the lm_head keeps ", kept, " of ", vocab, " columns");
  // The other columns start first, so that they are computed while this device does its own.
  if (kept < vocab) m.experts.start_lm_head(m.step, rows, ws.states.data());
  ws.reserve(ws.logits, size_t(rows) * kept);
  m.device.linear(ws.states.data(), m.weights.lm_head.get(), ws.logits.data(), rows, kept,
                  c.d_model);
  std::vector<int> best(rows);
  for (int r = 0; r < rows; ++r) best[r] = greedy_token(ws.logits.data() + size_t(r) * kept, kept);
  if (kept == vocab) return best;
  std::vector<float> other_logit;
  std::vector<int> other_id;
  m.experts.finish_lm_head(other_logit, other_id);
  // Their ids all come after this device's: they win only when strictly larger.
  for (int r = 0; r < rows; ++r)
    if (other_logit[r] > ws.logits[size_t(r) * kept + best[r]]) best[r] = other_id[r];
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
  int steps = 0;
  for (int step = 0; step < max_new_tokens; ++step) {
    // Finished sequences keep feeding pad, as HF does; rows never interact, so this only costs
    // time.
    const std::vector<int> next = decode_greedy(m, sequences, tokens);
    ++steps;
    int unfinished = 0;
    for (int b = 0; b < B; ++b) {
      if (finished[b]) {
        tokens[b] = c.pad_token_id;
        continue;
      }
      const int best = next[b];
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
