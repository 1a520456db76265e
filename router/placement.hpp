// GPU-aware expert placement: put every (layer, expert) on the ranks that minimise the slowest
// rank's predicted time per layer, within each rank's memory, then replicate the hottest experts
// (EPLB-style) where that lowers the slowest rank further. Predictions come from the profile:
// a rank's time is the sum of its experts' profiled FFN times for their expected token counts
// plus the link time for those tokens, plus under a memory budget the loads of the experts it
// holds beyond its committee. Replicas share an expert's tokens evenly.
#pragma once

#include <cstdint>
#include <vector>

#include "router/expert_map.hpp"
#include "router/profile.hpp"

namespace moe {

struct PlacementProblem {
  const Profile* profile = nullptr;
  std::vector<std::vector<double>> load;  // [layer][expert]: expected tokens per layer call
  std::vector<int> ranks;                 // expert ranks to place on
  size_t bytes_per_expert = 0;
  size_t memory_per_rank = 0;  // 0: the profile's memory_bytes (0 there, or a budget: unlimited)
  int extra_replicas = 0;      // per layer, added to the hottest experts
  // A memory budget on every expert rank (--expert-memory): the experts it keeps resident (0: all
  // it holds), spread evenly over the sparse layers as the ranks spread their committees. In each
  // layer the hottest experts fill the seats first (they stay resident: the most routed mass), the
  // rest are balanced with a miss's cost on the ranks that would load them.
  int64_t resident_per_rank = 0;
};

ExpertMap place_experts(const PlacementProblem& problem);

// How many (layer, expert) pairs `rank` may hold (SIZE_MAX: unlimited).
size_t expert_capacity(const PlacementProblem& problem, int rank);

// A rank's committee seats in `layer` under the budget (INT_MAX without one).
int committee_seats(const PlacementProblem& problem, int layer);

// [rank][expert]: whether `rank` keeps that expert of `layer` resident under `map`: without a
// budget every expert it holds; with one, its `committee_seats` hottest (by tokens it serves).
std::vector<std::vector<uint8_t>> resident_experts(const PlacementProblem& problem,
                                                   const ExpertMap& map, int layer);

// The share (0..1) of the routed tokens whose expert is resident on at least one of its replicas
// (the runtime sends them there), over every layer.
double predicted_resident_share(const PlacementProblem& problem, const ExpertMap& map);

// Predicted time of each rank for one call of `layer` under `map` (index = rank). A non-resident
// expert with n expected tokens adds P(at least one) = 1 - e^-n times the rank's profiled load.
std::vector<double> predicted_rank_times_us(const PlacementProblem& problem, const ExpertMap& map,
                                            int layer);
// Mean over layers of the slowest rank's predicted time.
double predicted_layer_time_us(const PlacementProblem& problem, const ExpertMap& map);

// Baselines for comparison.
ExpertMap random_expert_map(int num_layers, int num_experts, const std::vector<int>& ranks,
                            uint64_t seed);
// Round-robin over only the ranks of the fastest device class (lowest profiled 64-token time,
// within 10%).
ExpertMap fastest_class_expert_map(const PlacementProblem& problem, int num_layers,
                                   int num_experts);

}  // namespace moe
