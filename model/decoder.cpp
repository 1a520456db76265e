#include "model/decoder.hpp"

#include <cmath>
#include <cstring>

#include "model/attention.hpp"
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
  MOE_CHECK(total <= cache.max_length, "decode: cache holds ", cache.max_length,
            " positions, ", total, " requested");

  m.step = past + 1;
  std::vector<float> x(size_t(T) * d);
  embed(w.decoder_embedding.get(), tokens, d, x.data());
  ws.reserve(ws.bias, size_t(H) * n * total);
  relative_position_bias(w.decoder_relative_bias.get(), c, /*bidirectional=*/false, past, n, total,
                         ws.bias.data());
  for (size_t l = 0; l < w.decoder.size(); ++l) {
    const BlockWeights& block = w.decoder[l];
    ws.reserve(ws.normed, size_t(T) * d);
    for (auto* buf : {&ws.q, &ws.k, &ws.v, &ws.ctx}) ws.reserve(*buf, size_t(T) * inner);
    ws.reserve(ws.proj, size_t(T) * d);

    // Causal self-attention over the cache plus the new positions.
    rms_norm(x.data(), block.self_attn_norm.get(), c.layer_norm_epsilon, T, d, ws.normed.data());
    m.device.linear(ws.normed.data(), block.self_attn.q.get(), ws.q.data(), T, inner, d);
    m.device.linear(ws.normed.data(), block.self_attn.k.get(), ws.k.data(), T, inner, d);
    m.device.linear(ws.normed.data(), block.self_attn.v.get(), ws.v.data(), T, inner, d);
    float* ck = cache.self_k[l].data();
    float* cv = cache.self_v[l].data();
    for (int b = 0; b < B; ++b) {
      const size_t dst = (size_t(b) * cache.max_length + past) * inner;
      std::memcpy(ck + dst, ws.k.data() + size_t(b) * n * inner, sizeof(float) * n * inner);
      std::memcpy(cv + dst, ws.v.data() + size_t(b) * n * inner, sizeof(float) * n * inner);
    }
    const AttentionShape self_shape{H, c.d_kv, n, total, past, true};
    for (int b = 0; b < B; ++b) {
      const size_t kv = size_t(b) * cache.max_length * inner, qo = size_t(b) * n * inner;
      attend(self_shape, ws.q.data() + qo, inner, ck + kv, cv + kv, inner, ws.bias.data(),
             nullptr, ws.ctx.data() + qo, inner);
    }
    m.device.linear(ws.ctx.data(), block.self_attn.o.get(), ws.proj.data(), T, d, inner);
    add_inplace(x.data(), ws.proj.data(), size_t(T) * d);

    // Cross-attention over the encoder states (no position bias, encoder padding masked).
    rms_norm(x.data(), block.cross_attn_norm.get(), c.layer_norm_epsilon, T, d, ws.normed.data());
    m.device.linear(ws.normed.data(), block.cross_attn.q.get(), ws.q.data(), T, inner, d);
    const AttentionShape cross_shape{H, c.d_kv, n, enc.seq_len, 0, false};
    for (int b = 0; b < B; ++b) {
      const size_t kv = size_t(b) * enc.seq_len * inner, qo = size_t(b) * n * inner;
      attend(cross_shape, ws.q.data() + qo, inner, cache.cross_k[l].data() + kv,
             cache.cross_v[l].data() + kv, inner, nullptr,
             enc.valid.data() + size_t(b) * enc.seq_len, ws.ctx.data() + qo, inner);
    }
    m.device.linear(ws.ctx.data(), block.cross_attn.o.get(), ws.proj.data(), T, d, inner);
    add_inplace(x.data(), ws.proj.data(), size_t(T) * d);

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
