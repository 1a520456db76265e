#include "model/decoder.hpp"

#include <cmath>
#include <cstring>

#include "model/attention.hpp"
#include "model/attention_sublayer.hpp"
#include "model/layers.hpp"
#include "runtime/error.hpp"

namespace moe {

DecoderCache start_decoder(SwitchModel& m, const EncoderOutput& enc, int max_length) {
  const ModelConfig& c = m.config;
  const int inner = c.inner_dim();
  const int T = enc.sequences * enc.seq_len;
  DecoderCache cache;
  cache.sequences = enc.sequences;
  cache.max_length = max_length;
  const size_t self_size = size_t(enc.sequences) * max_length * inner;
  for (const BlockWeights& block : m.weights.decoder) {
    cache.self_k.emplace_back(self_size);
    cache.self_v.emplace_back(self_size);
    cache.cross_k.emplace_back(size_t(T) * inner);
    cache.cross_v.emplace_back(size_t(T) * inner);
    m.device.linear(enc.hidden.data(), block.cross_attn.k.get(), cache.cross_k.back().data(), T,
                    inner, c.d_model);
    m.device.linear(enc.hidden.data(), block.cross_attn.v.get(), cache.cross_v.back().data(), T,
                    inner, c.d_model);
  }
  return cache;
}

void decode(SwitchModel& m, DecoderCache& cache, const EncoderOutput& enc,
            const std::vector<int>& tokens, int n, bool last_only, std::vector<float>& logits) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  Workspace& ws = m.ws;
  const int B = cache.sequences, T = B * n, d = c.d_model, inner = c.inner_dim(), H = c.num_heads;
  const int past = cache.length, total = past + n;
  MOE_CHECK(int(tokens.size()) == T, "decode: expected ", T, " tokens, got ", tokens.size());
  MOE_CHECK(total <= cache.max_length, "decode: cache holds ", cache.max_length, " positions, ",
            total, " requested");

  m.step = past + 1;
  std::vector<float> x(size_t(T) * d);
  embed(w.decoder_embedding.get(), tokens, d, x.data());
  ws.reserve(ws.bias, size_t(H) * n * total);
  relative_position_bias(w.decoder_relative_bias.get(), c, /*bidirectional=*/false, past, n, total,
                         ws.bias.data());
  for (size_t l = 0; l < w.decoder.size(); ++l) {
    const BlockWeights& block = w.decoder[l];
    // Causal self-attention over the cache plus the new positions.
    normalize_and_project(m, block.self_attn_norm.get(), block.self_attn, x.data(), T, true);
    float* ck = cache.self_k[l].data();
    float* cv = cache.self_v[l].data();
    for (int b = 0; b < B; ++b) {
      const size_t dst = (size_t(b) * cache.max_length + past) * inner;
      std::memcpy(ck + dst, ws.k.data() + size_t(b) * n * inner, sizeof(float) * n * inner);
      std::memcpy(cv + dst, ws.v.data() + size_t(b) * n * inner, sizeof(float) * n * inner);
    }
    const KeyValues self_kv{ck, cv, size_t(cache.max_length) * inner, ws.bias.data()};
    attend_and_add(m, block.self_attn, {H, c.d_kv, n, total, past, true}, B, self_kv, x.data());

    // Cross-attention over the encoder states (no position bias, encoder padding masked).
    normalize_and_project(m, block.cross_attn_norm.get(), block.cross_attn, x.data(), T, false);
    const KeyValues cross_kv{
        cache.cross_k[l].data(), cache.cross_v[l].data(), size_t(enc.seq_len) * inner, nullptr,
        enc.valid.data(),        size_t(enc.seq_len)};
    attend_and_add(m, block.cross_attn, {H, c.d_kv, n, enc.seq_len, 0, false}, B, cross_kv,
                   x.data());

    feed_forward(m, block, x.data(), B, n);
  }
  cache.length = total;

  // Final norm on the rows we need logits for, then lm_head (rescaled when tied, as HF does).
  const int rows = last_only ? B : T;
  std::vector<float> picked(size_t(rows) * d);
  for (int r = 0; r < rows; ++r) {
    const int src = last_only ? r * n + (n - 1) : r;
    std::memcpy(picked.data() + size_t(r) * d, x.data() + size_t(src) * d, sizeof(float) * d);
  }
  std::vector<float> normed(size_t(rows) * d);
  rms_norm(picked.data(), w.decoder_final_norm.get(), c.layer_norm_epsilon, rows, d, normed.data());
  if (c.tie_word_embeddings) {
    const float scale = static_cast<float>(std::pow(double(d), -0.5));
    for (float& v : normed) v *= scale;
  }
  logits.resize(size_t(rows) * c.vocab_size);
  m.device.linear(normed.data(), w.lm_head.get(), logits.data(), rows, c.vocab_size, d);
}

}  // namespace moe
