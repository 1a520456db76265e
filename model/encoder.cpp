#include "model/encoder.hpp"

#include <algorithm>

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
  if (m.on_route) m.on_route(layer.moe_layer, sequences, seq_len, ws.router_logits, ws.gate);
  if (skip_padding)
    for (int t = 0; t < T; ++t)
      if (!valid[t]) ws.gate.kept[t] = 0;
  m.experts.adjust_routing(layer.moe_layer, ws.router_logits.data(), ws.normed.data(), d, ws.gate);
  plan_expert_dispatch(ws.gate, E, ws.dispatch);
  const size_t rows = size_t(ws.dispatch.rows());
  ws.reserve(ws.rows_in, rows * d);
  ws.reserve(ws.rows_out, rows * d);
  gather_rows(ws.normed.data(), ws.dispatch, d, ws.rows_in.data());
  m.experts.run(layer, m.step, ws.gate, ws.dispatch, ws.rows_in.data(), ws.rows_out.data());
  scatter_add_rows(ws.rows_out.data(), ws.dispatch, ws.gate.probability, d, x);
}

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

  ws.reserve(ws.bias, size_t(H) * S * S);
  relative_position_bias(w.encoder_relative_bias.get(), c, /*bidirectional=*/true, 0, S, S,
                         ws.bias.data());
  for (const BlockWeights& block : w.encoder) {
    normalize_and_project(m, block.self_attn_norm.get(), block.self_attn, x.data(), T, true);
    const KeyValues kv{ws.k.data(),    ws.v.data(),        size_t(S) * inner,
                       ws.bias.data(), batch.valid.data(), size_t(S)};
    attend_and_add(m, block.self_attn, {H, c.d_kv, S, S, 0, false}, B, kv, x.data());
    feed_forward(m, block, x.data(), B, S, m.ffn_on_padding ? nullptr : batch.valid.data());
  }
  out.hidden.resize(size_t(T) * d);
  rms_norm(x.data(), w.encoder_final_norm.get(), c.layer_norm_epsilon, T, d, out.hidden.data());
  return out;
}

}  // namespace moe
