// Synthetic routing traces for clusters and models larger than any recorded run: every batch
// calls each sparse layer once with `tokens_per_call` tokens, each token's expert drawn from a
// popularity that is uniform ("balanced") or Zipf-like ("skewed": the k-th most popular expert of
// a layer, in a random order per layer, has weight 1/(k+1)^zipf). Router probability and entropy
// are drawn to be consistent with each other; an optional capacity factor drops tokens as the
// Switch gate does (per sequence, in position order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "router/routing_trace.hpp"

namespace moe::sim {

struct SyntheticSpec {
  std::string popularity = "balanced";  // "balanced" or "skewed"
  int layers = 1, experts = 8;
  int batches = 16;  // calls = batches * layers
  int tokens_per_call = 256;
  int sequences = 1;  // tokens_per_call = sequences * seq_len
  double zipf = 1.2;
  double capacity_factor = 0;  // 0: keep every token
  uint64_t seed = 1;
};

std::vector<RoutingRecord> synthetic_trace(const SyntheticSpec& spec);

}  // namespace moe::sim
