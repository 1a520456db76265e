#include "router/gate.hpp"

#include <cmath>

#include "runtime/error.hpp"

namespace moe {

void top1_gate(const float* logits, int sequences, int seq_len, int num_experts, int capacity,
               GateResult& out) {
  MOE_CHECK(num_experts > 0 && capacity >= 0, "top1_gate: bad arguments");
  const int T = sequences * seq_len;
  out.expert.assign(T, 0);
  out.probability.assign(T, 0.0f);
  out.kept.assign(T, 0);
  out.entropy.assign(T, 0.0f);
  std::vector<float> probs(num_experts);
  std::vector<int> used(num_experts);
  for (int s = 0; s < sequences; ++s) {
    std::fill(used.begin(), used.end(), 0);
    for (int p = 0; p < seq_len; ++p) {
      const int t = s * seq_len + p;
      const float* row = logits + size_t(t) * num_experts;
      float max_logit = row[0];
      for (int e = 1; e < num_experts; ++e) max_logit = std::max(max_logit, row[e]);
      float sum = 0.0f;
      for (int e = 0; e < num_experts; ++e) sum += probs[e] = std::exp(row[e] - max_logit);
      int best = 0;  // first maximum, as torch.argmax
      for (int e = 0; e < num_experts; ++e) {
        probs[e] /= sum;
        if (probs[e] > probs[best]) best = e;
      }
      float entropy = 0.0f;
      for (int e = 0; e < num_experts; ++e)
        if (probs[e] > 0.0f) entropy -= probs[e] * std::log(probs[e]);
      out.entropy[t] = entropy;
      out.expert[t] = best;
      out.probability[t] = probs[best];
      out.kept[t] = ++used[best] <= capacity;
    }
  }
}

}  // namespace moe
