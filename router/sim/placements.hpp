// Expert maps for a simulated cluster, by name or from a file (ranks are cluster ranks: expert
// ranks first_expert_rank()..world_size()-1, as in a live run's expert_map.json):
//   round-robin   expert e of layer l on expert rank (l*E + e) mod N (router/expert_map.hpp)
//   replicated:K  the same, plus K-1 more copies spread N/K ranks apart (K <= N)
//   all           every expert on every expert rank (routing alone balances the load)
//   random        one rank per expert, uniformly at random (router/placement.hpp)
//   placed[:R]    GPU-aware placement (router/placement.hpp) from the cluster's curves and the
//                 trace's mean expert load, R extra replicas per layer
//   FILE          an expert_map.json
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "router/expert_map.hpp"
#include "router/routing_trace.hpp"
#include "router/sim/cluster.hpp"

namespace moe::sim {

ExpertMap make_placement(const std::string& spec, const ClusterConfig& cluster,
                         const Profile& cluster_profile, const std::vector<RoutingRecord>& trace,
                         int num_layers, int num_experts, uint64_t seed);

}  // namespace moe::sim
