// An expert rank's answer to `moe profile`: its expert FFN timed over token counts.
#pragma once

#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/weights.hpp"
#include "runtime/device.hpp"
#include "runtime/messages.hpp"

namespace moe {

// Times the expert FFN at each of the request's token counts over the experts this rank holds
// (all, or up to max_experts), in rotation: expert 1, 2, ..., k, each once, after an untimed
// warm-up pass when asked. In a run a rank goes through all its experts layer after layer, so an
// expert's weights are rarely in the cache when its turn comes; timing one expert over and over
// would find them there and under-state the cost. Each point is the median over the rotation.
ProfileResult time_experts(const ProfileRequest& request,
                           const std::vector<const SparseFfnWeights*>& layers, Device& device,
                           const ModelConfig& config, int rank, const std::string& device_spec);

}  // namespace moe
