// Switch Transformer's top-1 router gate, as Hugging Face computes it: float32 softmax over the
// router logits, argmax expert, its probability as the output scale, and an expert capacity counted
// per sequence in position order (padding positions included) — tokens beyond it are dropped.
#pragma once

#include <cstdint>
#include <vector>

namespace moe {

struct GateResult {
  std::vector<int> expert;         // [T] argmax expert of each token
  std::vector<float> probability;  // [T] its softmax probability
  std::vector<uint8_t> kept;       // [T] 1 when within capacity, 0 when dropped
  std::vector<float> entropy;      // [T] entropy of the router distribution (nats)
};

// logits[T, E] with T = sequences * seq_len rows, sequence-major.
void top1_gate(const float* logits, int sequences, int seq_len, int num_experts, int capacity,
               GateResult& out);

}  // namespace moe
