#include "model/decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/attention.hpp"
#include "model/attention_sublayer.hpp"
#include "model/layers.hpp"
#include "runtime/error.hpp"

namespace moe {

std::vector<SequenceCache> start_decoder(SwitchModel& m, const EncoderOutput& enc, int max_length) {
  const ModelConfig& c = m.config;
  const int inner = c.inner_dim(), S = enc.seq_len, L = int(m.weights.decoder.size());
  std::vector<SequenceCache> caches(enc.sequences);
  for (int b = 0; b < enc.sequences; ++b) {
    SequenceCache& s = caches[b];
    s.max_length = max_length;
    // Right-padded: the valid positions are a prefix.
    s.encoder_length = int(std::count(enc.valid.begin() + size_t(b) * S,
                                      enc.valid.begin() + size_t(b + 1) * S, uint8_t(1)));
    s.self_k.resize(size_t(L) * max_length * inner);
    s.self_v.resize(s.self_k.size());
    s.cross_k.resize(size_t(L) * s.encoder_length * inner);
    s.cross_v.resize(s.cross_k.size());
  }
  // Only the real rows: a sequence's encoder states past its length are padding, which no cache
  // keeps (a third of a batch of prompts padded to its longest).
  std::vector<size_t> first(enc.sequences);
  size_t rows = 0;
  for (int b = 0; b < enc.sequences; ++b) {
    first[b] = rows;
    rows += caches[b].encoder_length;
  }
  const int d = c.d_model;
  std::vector<float> real(rows * d);
  for (int b = 0; b < enc.sequences; ++b)
    std::memcpy(real.data() + first[b] * d, enc.hidden.data() + size_t(b) * S * d,
                sizeof(float) * caches[b].encoder_length * d);
  std::vector<float> k(rows * inner), v(k.size());
  for (int l = 0; l < L; ++l) {
    const BlockWeights& block = m.weights.decoder[l];
    m.device.linear(real.data(), block.cross_attn.k.get(), k.data(), int(rows), inner, d);
    m.device.linear(real.data(), block.cross_attn.v.get(), v.data(), int(rows), inner, d);
    for (int b = 0; b < enc.sequences; ++b) {
      SequenceCache& s = caches[b];
      const size_t n = size_t(s.encoder_length) * inner, dst = size_t(l) * n;
      std::memcpy(s.cross_k.data() + dst, k.data() + first[b] * inner, sizeof(float) * n);
      std::memcpy(s.cross_v.data() + dst, v.data() + first[b] * inner, sizeof(float) * n);
    }
  }
  return caches;
}

std::vector<SequenceCache*> all_of(std::vector<SequenceCache>& caches) {
  std::vector<SequenceCache*> out;
  for (auto& c : caches) out.push_back(&c);
  return out;
}

namespace {

// Each sequence's relative position bias [H, n, length + n] for its n new positions, one after
// another in `bias`; `offsets[b]` is where sequence b's begins.
void sequence_biases(const SwitchModel& m, const std::vector<SequenceCache*>& seqs, int n,
                     std::vector<float>& bias, std::vector<size_t>& offsets) {
  const int H = m.config.num_heads;
  offsets.clear();
  size_t size = 0;
  for (const auto* s : seqs) {
    offsets.push_back(size);
    size += size_t(H) * n * (s->length + n);
  }
  if (bias.size() < size) bias.resize(size);
  for (size_t b = 0; b < seqs.size(); ++b)
    relative_position_bias(m.weights.decoder_relative_bias.get(), m.config,
                           /*bidirectional=*/false, seqs[b]->length, n, seqs[b]->length + n,
                           bias.data() + offsets[b]);
}

// Causal self-attention of block l over each sequence's cache plus its new positions.
void self_attention(SwitchModel& m, int l, const std::vector<SequenceCache*>& seqs, int n,
                    const std::vector<size_t>& bias_at, float* x) {
  const ModelConfig& c = m.config;
  const BlockWeights& block = m.weights.decoder[l];
  Workspace& ws = m.ws;
  const int inner = c.inner_dim(), T = int(seqs.size()) * n;
  normalize_and_project(m, block.self_attn_norm.get(), block.self_attn, x, T, true);
  for (size_t b = 0; b < seqs.size(); ++b) {
    SequenceCache& s = *seqs[b];
    const size_t cache_at = size_t(l) * s.max_length * inner;
    const size_t dst = cache_at + size_t(s.length) * inner, src = b * n * inner;
    std::memcpy(s.self_k.data() + dst, ws.k.data() + src, sizeof(float) * n * inner);
    std::memcpy(s.self_v.data() + dst, ws.v.data() + src, sizeof(float) * n * inner);
    const KeyValues kv{s.self_k.data() + cache_at, s.self_v.data() + cache_at, 0,
                       ws.bias.data() + bias_at[b]};
    attend_sequences(m, {c.num_heads, c.d_kv, n, s.length + n, s.length, true}, int(b), 1, kv);
  }
  project_out_and_add(m, block.self_attn, T, x);
}

// Cross-attention of block l over each sequence's encoder states (no position bias).
void cross_attention(SwitchModel& m, int l, const std::vector<SequenceCache*>& seqs, int n,
                     float* x) {
  const ModelConfig& c = m.config;
  const BlockWeights& block = m.weights.decoder[l];
  const int inner = c.inner_dim(), T = int(seqs.size()) * n;
  normalize_and_project(m, block.cross_attn_norm.get(), block.cross_attn, x, T, false);
  for (size_t b = 0; b < seqs.size(); ++b) {
    const SequenceCache& s = *seqs[b];
    const size_t at = size_t(l) * s.encoder_length * inner;
    const KeyValues kv{s.cross_k.data() + at, s.cross_v.data() + at, 0, nullptr};
    attend_sequences(m, {c.num_heads, c.d_kv, n, s.encoder_length, 0, false}, int(b), 1, kv);
  }
  project_out_and_add(m, block.cross_attn, T, x);
}

}  // namespace

void decode_states(SwitchModel& m, const std::vector<SequenceCache*>& seqs,
                   const std::vector<int>& tokens, int n, bool last_only,
                   std::vector<float>& states) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  const int B = int(seqs.size()), T = B * n, d = c.d_model;
  MOE_CHECK(int(tokens.size()) == T, "decode: expected ", T, " tokens, got ", tokens.size());
  int longest = 0;
  for (const auto* s : seqs) {
    MOE_CHECK(s->length + n <= s->max_length, "decode: cache holds ", s->max_length, " positions, ",
              s->length + n, " requested");
    longest = std::max(longest, s->length);
  }
  m.step = longest + 1;
  std::vector<float> x(size_t(T) * d);
  embed(w.decoder_embedding.get(), tokens, d, x.data());
  std::vector<size_t> bias_at;
  sequence_biases(m, seqs, n, m.ws.bias, bias_at);
  for (int l = 0; l < int(w.decoder.size()); ++l) {
    self_attention(m, l, seqs, n, bias_at, x.data());
    cross_attention(m, l, seqs, n, x.data());
    feed_forward(m, w.decoder[l], x.data(), B, n);
  }
  for (auto* s : seqs) s->length += n;

  // Final norm on the rows we need logits for, rescaled as HF does (when tied, for Switch).
  const int rows = last_only ? B : T;
  std::vector<float> picked(size_t(rows) * d);
  for (int r = 0; r < rows; ++r) {
    const int src = last_only ? r * n + (n - 1) : r;
    std::memcpy(picked.data() + size_t(r) * d, x.data() + size_t(src) * d, sizeof(float) * d);
  }
  states.resize(size_t(rows) * d);
  rms_norm(picked.data(), w.decoder_final_norm.get(), c.layer_norm_epsilon, rows, d, states.data());
  if (c.scale_decoder_output) {
    const float scale = static_cast<float>(std::pow(double(d), -0.5));
    for (float& v : states) v *= scale;
  }
}

void decode(SwitchModel& m, const std::vector<SequenceCache*>& seqs, const std::vector<int>& tokens,
            int n, bool last_only, std::vector<float>& logits) {
  const ModelConfig& c = m.config;
  std::vector<float> states;
  decode_states(m, seqs, tokens, n, last_only, states);
  const int rows = int(states.size() / c.d_model);
  logits.resize(size_t(rows) * c.vocab_size);
  m.device.linear(states.data(), m.weights.lm_head.get(), logits.data(), rows, c.vocab_size,
                  c.d_model);
}

}  // namespace moe
