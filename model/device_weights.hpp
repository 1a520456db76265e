// Hands a rank's large weight matrices to its device before serving, so that a device with a
// compact weight format (cpu:T:bf16, cpu:T:int8) converts them once, at load, not during a step.
#pragma once

#include "model/config.hpp"
#include "model/weights.hpp"
#include "runtime/device.hpp"

namespace moe {

// Offers `device` every loaded attention projection, dense FFN, resident expert and the lm_head's
// rows [lm_head_first, lm_head_last) (when loaded). Routers are not offered: they stay float32,
// so that compact weights change expert choices only through the hidden states they feed. With
// `with_experts` false the experts are left out (a memory budget maps in its committee itself).
void prepare_weights(Device& device, const ModelWeights& weights, const ModelConfig& config,
                     int lm_head_first, int lm_head_last, bool with_experts = true);

}  // namespace moe
