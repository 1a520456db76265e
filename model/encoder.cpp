#include "model/encoder.hpp"

#include <algorithm>
#include <cstring>
#include <optional>

#include "model/attention.hpp"
#include "model/attention_sublayer.hpp"
#include "model/layers.hpp"
#include "runtime/error.hpp"

namespace moe {

Batch make_batch(const std::vector<std::vector<int>>& sequences, int pad_token_id) {
  Batch b;
  b.sequences = static_cast<int>(sequences.size());
  for (const auto& s : sequences) b.seq_len = std::max<int>(b.seq_len, int(s.size()));
  b.ids.assign(size_t(b.sequences) * b.seq_len, pad_token_id);
  b.valid.assign(b.ids.size(), 0);
  for (int i = 0; i < b.sequences; ++i) {
    MOE_CHECK(!sequences[i].empty(), "input ", i, ": empty token sequence");
    for (size_t p = 0; p < sequences[i].size(); ++p) {
      b.ids[size_t(i) * b.seq_len + p] = sequences[i][p];
      b.valid[size_t(i) * b.seq_len + p] = 1;
    }
  }
  return b;
}

void feed_forward(SwitchModel& m, const BlockWeights& block, float* x, int sequences, int seq_len,
                  const uint8_t* valid) {
  const ModelConfig& c = m.config;
  Workspace& ws = m.ws;
  const int T = sequences * seq_len, d = c.d_model;
  ws.reserve(ws.normed, size_t(T) * d);
  rms_norm(x, block.ffn_norm.get(), c.layer_norm_epsilon, T, d, ws.normed.data());
  // Padding positions skip the FFN: nothing reads them (keys are masked, outputs unused), and
  // padding sits after a sequence's tokens, so it takes no expert capacity from them.
  const bool skip_padding = valid && !std::all_of(valid, valid + T, [](uint8_t v) { return v; });
  if (!block.sparse) {
    // A dense FFN is one expert that takes every (real) token.
    int rows = T;
    const float* in = ws.normed.data();
    if (skip_padding) {
      ws.dispatch.token_of_row.clear();
      for (int t = 0; t < T; ++t)
        if (valid[t]) ws.dispatch.token_of_row.push_back(t);
      rows = int(ws.dispatch.token_of_row.size());
      ws.dispatch.offsets = {0, rows};
      ws.reserve(ws.rows_in, size_t(rows) * d);
      gather_rows(ws.normed.data(), ws.dispatch, d, ws.rows_in.data());
      in = ws.rows_in.data();
    }
    ws.reserve(ws.proj, size_t(rows) * d);
    if (m.experts.runs_dense(block))
      m.experts.run_dense(block, m.step, rows, in, ws.proj.data());
    else
      m.device.expert_ffn({{{block.dense.wi.get(), block.dense.wo.get()}, 0, rows}}, in,
                          ws.proj.data(), d, c.d_ff);
    if (!skip_padding) {
      add_inplace(x, ws.proj.data(), size_t(T) * d);
      return;
    }
    for (int r = 0; r < rows; ++r)
      add_inplace(x + size_t(ws.dispatch.token_of_row[r]) * d, ws.proj.data() + size_t(r) * d,
                  size_t(d));
    return;
  }
  const SparseFfnWeights& layer = block.moe;
  const int E = c.num_experts;
  ws.reserve(ws.router_logits, size_t(T) * E);
  ws.router_logits.resize(size_t(T) * E);
  m.device.linear(ws.normed.data(), layer.router.get(), ws.router_logits.data(), T, E, d);
  if (layer.router_bias)
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E; ++e) ws.router_logits[size_t(t) * E + e] += layer.router_bias.get()[e];
  top1_gate(ws.router_logits.data(), sequences, seq_len, E, c.expert_capacity, ws.gate);
  if (skip_padding)
    for (int t = 0; t < T; ++t)
      if (!valid[t]) ws.gate.kept[t] = 0;
  // Observers (a recorded routing trace, and from it a memory plan) see the tokens that reach an
  // expert: padding's router choices follow states that are never computed.
  if (m.on_route) m.on_route(layer.moe_layer, sequences, seq_len, ws.router_logits, ws.gate);
  m.experts.adjust_routing(layer.moe_layer, ws.router_logits.data(), ws.normed.data(), d, ws.gate);
  plan_expert_dispatch(ws.gate, E, ws.dispatch);
  const size_t rows = size_t(ws.dispatch.rows());
  ws.reserve(ws.rows_in, rows * d);
  ws.reserve(ws.rows_out, rows * d);
  gather_rows(ws.normed.data(), ws.dispatch, d, ws.rows_in.data());
  m.experts.run(layer, m.step, ws.gate, ws.dispatch, ws.rows_in.data(), ws.rows_out.data());
  scatter_add_rows(ws.rows_out.data(), ws.dispatch, ws.gate.probability, d, x);
}

namespace {

// The real tokens of a right-padded batch: sequence b's are rows [b * seq_len, + length[b]) of the
// padded layout and rows [first[b], + length[b]) of the packed one.
struct RealTokens {
  std::vector<int> length, first;
  int total = 0;
};

// The batch's real tokens, or none when it has no padding or its padding is not a suffix of each
// sequence (then the padded path serves it as it is).
std::optional<RealTokens> real_tokens(const Batch& batch) {
  RealTokens r;
  for (int b = 0; b < batch.sequences; ++b) {
    const auto row = batch.valid.begin() + size_t(b) * batch.seq_len;
    const int n = int(std::find(row, row + batch.seq_len, uint8_t(0)) - row);
    if (std::find(row + n, row + batch.seq_len, uint8_t(1)) != row + batch.seq_len)
      return std::nullopt;
    r.first.push_back(r.total);
    r.length.push_back(n);
    r.total += n;
  }
  if (r.total == batch.sequences * batch.seq_len) return std::nullopt;
  return r;
}

// The self-attention sublayer over the real tokens only: x's real rows are packed, projected,
// attended per sequence (each over its own keys, with its own [H, n, n] slice of the position
// bias) and added back. A batch of prompts padded to its longest is about a third padding
// (docs/BENCHMARKS.md section 12), whose projections this skips; real rows come out as in the
// padded layout, which computes every row on its own and masks the padded keys.
void attend_real_tokens(SwitchModel& m, const BlockWeights& block, const RealTokens& r, int S,
                        const std::vector<std::vector<float>>& biases, float* x) {
  const ModelConfig& c = m.config;
  Workspace& ws = m.ws;
  const int d = c.d_model, inner = c.inner_dim(), B = int(r.length.size());
  ws.reserve(ws.rows_in, size_t(r.total) * d);
  for (int b = 0; b < B; ++b)
    std::memcpy(ws.rows_in.data() + size_t(r.first[b]) * d, x + size_t(b) * S * d,
                sizeof(float) * r.length[b] * d);
  normalize_and_project(m, block.self_attn_norm.get(), block.self_attn, ws.rows_in.data(), r.total,
                        true);
  for (int b = 0; b < B; ++b) {
    const size_t at = size_t(r.first[b]) * inner;
    attend({c.num_heads, c.d_kv, r.length[b], r.length[b], 0, false}, ws.q.data() + at, inner,
           ws.k.data() + at, ws.v.data() + at, inner, biases[b].data(), nullptr, ws.ctx.data() + at,
           inner);
  }
  m.device.linear(ws.ctx.data(), block.self_attn.o.get(), ws.proj.data(), r.total, d, inner);
  for (int b = 0; b < B; ++b)
    add_inplace(x + size_t(b) * S * d, ws.proj.data() + size_t(r.first[b]) * d,
                size_t(r.length[b]) * d);
}

}  // namespace

EncoderOutput encode(SwitchModel& m, const Batch& batch) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  Workspace& ws = m.ws;
  const int B = batch.sequences, S = batch.seq_len, T = B * S, d = c.d_model;
  const int inner = c.inner_dim(), H = c.num_heads;
  m.step = 0;
  EncoderOutput out;
  out.sequences = B;
  out.seq_len = S;
  out.valid = batch.valid;
  std::vector<float> x(size_t(T) * d);
  embed(w.encoder_embedding.get(), batch.ids, d, x.data());

  const std::optional<RealTokens> real = m.compute_padding ? std::nullopt : real_tokens(batch);
  std::vector<std::vector<float>> biases;  // per sequence, when packed
  if (real) {
    for (int n : real->length) {
      biases.emplace_back(size_t(H) * n * n);
      relative_position_bias(w.encoder_relative_bias.get(), c, /*bidirectional=*/true, 0, n, n,
                             biases.back().data());
    }
  } else {
    ws.reserve(ws.bias, size_t(H) * S * S);
    relative_position_bias(w.encoder_relative_bias.get(), c, /*bidirectional=*/true, 0, S, S,
                           ws.bias.data());
  }
  for (const BlockWeights& block : w.encoder) {
    if (real) {
      attend_real_tokens(m, block, *real, S, biases, x.data());
    } else {
      normalize_and_project(m, block.self_attn_norm.get(), block.self_attn, x.data(), T, true);
      const KeyValues kv{ws.k.data(),    ws.v.data(),        size_t(S) * inner,
                         ws.bias.data(), batch.valid.data(), size_t(S)};
      attend_and_add(m, block.self_attn, {H, c.d_kv, S, S, 0, false}, B, kv, x.data());
    }
    feed_forward(m, block, x.data(), B, S, m.compute_padding ? nullptr : batch.valid.data());
  }
  out.hidden.resize(size_t(T) * d);
  rms_norm(x.data(), w.encoder_final_norm.get(), c.layer_norm_epsilon, T, d, out.hidden.data());
  return out;
}

}  // namespace moe
