#include "model/attention_sublayer.hpp"

#include "model/layers.hpp"

namespace moe {

void normalize_and_project(SwitchModel& m, const float* norm_weight, const AttentionWeights& w,
                           const float* x, int T, bool with_kv) {
  const ModelConfig& c = m.config;
  Workspace& ws = m.ws;
  const int d = c.d_model, inner = c.inner_dim();
  ws.reserve(ws.normed, size_t(T) * d);
  for (auto* buf : {&ws.q, &ws.k, &ws.v, &ws.ctx}) ws.reserve(*buf, size_t(T) * inner);
  ws.reserve(ws.proj, size_t(T) * d);
  rms_norm(x, norm_weight, c.layer_norm_epsilon, T, d, ws.normed.data());
  m.device.linear(ws.normed.data(), w.q.get(), ws.q.data(), T, inner, d);
  if (!with_kv) return;
  m.device.linear(ws.normed.data(), w.k.get(), ws.k.data(), T, inner, d);
  m.device.linear(ws.normed.data(), w.v.get(), ws.v.data(), T, inner, d);
}

void attend_sequences(SwitchModel& m, const AttentionShape& shape, int first, int count,
                      const KeyValues& kv) {
  Workspace& ws = m.ws;
  const int inner = m.config.inner_dim();
  for (int i = 0; i < count; ++i) {
    const size_t qo = size_t(first + i) * shape.queries * inner, kvo = size_t(i) * kv.seq_stride;
    attend(shape, ws.q.data() + qo, inner, kv.keys + kvo, kv.values + kvo, inner, kv.bias,
           kv.valid ? kv.valid + size_t(i) * kv.valid_stride : nullptr, ws.ctx.data() + qo, inner);
  }
}

void project_out_and_add(SwitchModel& m, const AttentionWeights& w, int T, float* x) {
  Workspace& ws = m.ws;
  const int d = m.config.d_model, inner = m.config.inner_dim();
  m.device.linear(ws.ctx.data(), w.o.get(), ws.proj.data(), T, d, inner);
  add_inplace(x, ws.proj.data(), size_t(T) * d);
}

void attend_and_add(SwitchModel& m, const AttentionWeights& w, const AttentionShape& shape, int B,
                    const KeyValues& kv, float* x) {
  attend_sequences(m, shape, 0, B, kv);
  project_out_and_add(m, w, B * shape.queries, x);
}

}  // namespace moe
