// What the encoder and decoder need to run: the config, the weights, the device for dense math and
// the executor that runs the experts of each sparse layer (locally, or on expert ranks).
#pragma once

#include <functional>
#include <vector>

#include "model/config.hpp"
#include "model/experts.hpp"
#include "model/weights.hpp"
#include "router/gate.hpp"
#include "runtime/device.hpp"

namespace moe {

// Called once per sparse layer call with the router logits [sequences*seq_len, E] and the gate
// (where padding skips the FFNs, its positions are not kept).
using RouterObserver = std::function<void(int moe_layer, int sequences, int seq_len,
                                          const std::vector<float>& logits, const GateResult&)>;

// A batch of encoder inputs, right-padded to one length.
struct Batch {
  int sequences = 0;
  int seq_len = 0;
  std::vector<int> ids;        // [sequences * seq_len], padding = pad_token_id
  std::vector<uint8_t> valid;  // [sequences * seq_len], 1 for real tokens
};
Batch make_batch(const std::vector<std::vector<int>>& sequences, int pad_token_id);

// Buffers reused across layers and steps; they only grow.
struct Workspace {
  std::vector<float> normed, q, k, v, ctx, proj, bias, router_logits, rows_in, rows_out;
  std::vector<float> states, logits;  // the decoder's final states, the lm_head's logits
  GateResult gate;
  ExpertDispatch dispatch;
  void reserve(std::vector<float>& buf, size_t n) {
    if (buf.size() < n) buf.resize(n);
  }
};

struct SwitchModel {
  const ModelConfig& config;
  const ModelWeights& weights;
  Device& device;
  ExpertExecutor& experts;
  RouterObserver on_route;  // optional
  Workspace ws;
  int64_t step = 0;  // 0 while encoding, then 1, 2, ... per decoder call
  // Run the encoder's projections and FFNs on padding positions too, as Hugging Face does. Their
  // results reach no real token, so serving skips them; `moe forward` keeps them to reproduce
  // HF's whole tensors.
  bool compute_padding = false;
};

// The feed-forward sublayer of a block: x += FFN(rms_norm(x)); sparse blocks go through the router.
// valid[T] (optional): 1 for real tokens; padding rows skip the FFN.
void feed_forward(SwitchModel& m, const BlockWeights& block, float* x, int sequences, int seq_len,
                  const uint8_t* valid = nullptr);

}  // namespace moe
