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

// Everything a rank needs to take part in a run.
struct RunPlan {
  std::string model_dir;
  ExpertMap expert_map;
  std::vector<std::string> devices;  // per rank, e.g. "cpu:1"
  std::string policy = "static";
  uint64_t seed = 0;
  double deadline_seconds = 60;
  bool trace = false;
  std::string transport = "mpi";  // "nccl" when every rank has a GPU
  std::string error;              // non-empty: rank 0 rejected the run; every rank exits

  template <class A>
  void serialize(A& ar) {
    ar(model_dir, expert_map, devices, policy, seed, deadline_seconds, trace, transport, error);
  }
};
template <>
struct MessageTypeOf<RunPlan> {
  static constexpr MessageType value = MessageType::kRunPlan;
};

// What rank 0 read while checking a run: the plan for every rank, and what only it needs.
struct CheckedRun {
  RunPlan plan;
  Profile profile;  // --profile, when given
  bool has_profile = false;
  std::shared_ptr<const LatencyModel> latency_model;  // --latency-model, when given
  std::string trace_path;                             // Chrome/Perfetto timeline of every rank
  std::string record_routing_path;          // JSONL routing trace of every sparse-layer call
  std::string record_latency_samples_path;  // CSV latency samples (needs the profile)
};

// Rank 0's plan to every rank (collective).
RunPlan share_plan(const World& world, const RunPlan& plan_on_root);

}  // namespace moe
