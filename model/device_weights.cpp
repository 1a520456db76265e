#include "model/device_weights.hpp"

namespace moe {

void prepare_weights(Device& device, const ModelWeights& w, const ModelConfig& c, int lm_head_first,
                     int lm_head_last, bool with_experts) {
  const int d = c.d_model, inner = c.inner_dim();
  auto attention = [&](const AttentionWeights& a) {
    for (const Weight* m : {&a.q, &a.k, &a.v}) device.prepare_weight(m->get(), inner, d);
    device.prepare_weight(a.o.get(), d, inner);
  };
  auto ffn = [&](const DenseFfnWeights& f) {
    device.prepare_weight(f.wi.get(), c.d_ff, d);
    device.prepare_weight(f.wo.get(), d, c.d_ff);
  };
  for (const auto* stack : {&w.encoder, &w.decoder})
    for (const BlockWeights& b : *stack) {
      attention(b.self_attn);
      attention(b.cross_attn);
      if (!b.sparse) ffn(b.dense);
      if (with_experts)
        for (const DenseFfnWeights& expert : b.moe.experts) ffn(expert);
    }
  if (w.lm_head && lm_head_last > lm_head_first)
    device.prepare_weight(w.lm_head.get() + size_t(lm_head_first) * d, lm_head_last - lm_head_first,
                          d);
}

}  // namespace moe
