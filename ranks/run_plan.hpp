// The plan of one run: rank 0 reads the command line, checks every input before any work starts,
// and sends the plan to every rank, which takes its role from it.
#pragma once

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "router/expert_map.hpp"
#include "router/latency_model.hpp"
#include "router/profile.hpp"
#include "runtime/messages.hpp"
#include "runtime/mpi/world.hpp"

namespace moe {

// Everything a rank needs to take part in a run. Ranks 0..attention_ranks-1 are attention ranks
// (rank 0 leads: it reads the input and writes the output); the others are expert ranks.
struct RunPlan {
  std::string model_dir;
  int attention_ranks = 1;
  int micro_batches = 1;          // per attention rank, taking turns at the expert ranks
  bool dense_on_experts = false;  // the dense FFN blocks run on the expert ranks too
  ExpertMap expert_map;
  std::vector<std::string> devices;  // per rank, e.g. "cpu:1"
  std::string policy = "static";
  std::string profile_path, latency_model_path;  // for the policy of every attention rank
  uint64_t seed = 0;
  double deadline_seconds = 60;
  bool trace = false;
  std::string transport = "mpi";  // "nccl" when every rank has a GPU
  std::string error;              // non-empty: rank 0 rejected the run; every rank exits

  template <class A>
  void serialize(A& ar) {
    ar(model_dir, attention_ranks, micro_batches, dense_on_experts, expert_map, devices, policy,
       profile_path, latency_model_path, seed, deadline_seconds, trace, transport, error);
  }
  bool is_attention_rank(int rank) const { return rank < attention_ranks; }
  int first_expert_rank() const { return attention_ranks; }
  int expert_ranks() const { return int(devices.size()) - attention_ranks; }
  // The expert rank that runs dense FFN block `dense_layer` when they run on expert ranks.
  int dense_rank(int dense_layer) const { return attention_ranks + dense_layer % expert_ranks(); }
};
template <>
struct MessageTypeOf<RunPlan> {
  static constexpr MessageType value = MessageType::kRunPlan;
};

// What rank 0 read while checking a run: the plan for every rank, and what only it needs.
struct CheckedRun {
  RunPlan plan;
  Profile profile;                                    // --profile, when given (plan.profile_path)
  std::shared_ptr<const LatencyModel> latency_model;  // --latency-model, when given
  std::string trace_path;                             // Chrome/Perfetto timeline of every rank
  std::string record_routing_path;          // JSONL routing trace of every sparse-layer call
  std::string record_latency_samples_path;  // CSV latency samples (needs the profile)
};

// Rank 0's plan to every rank (collective).
RunPlan share_plan(const World& world, const RunPlan& plan_on_root);

}  // namespace moe
