// The plan of one run: rank 0 reads the command line, checks every input before any work starts,
// and sends the plan to every rank, which takes its role from it.
#pragma once

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "router/expert_map.hpp"
#include "router/latency_model.hpp"
#include "router/memory_plan.hpp"
#include "router/profile.hpp"
#include "runtime/messages.hpp"
#include "runtime/mpi/world.hpp"

namespace moe {

// Everything a rank needs to take part in a run. Ranks 0..attention_ranks-1 are attention ranks
// (rank 0 leads: it reads the input and writes the output); the others are expert ranks. Co-located
// (--colocate): every rank is an attention rank and also holds its share of the experts.
struct RunPlan {
  std::string model_dir;
  int attention_ranks = 1;
  int micro_batches = 1;   // per attention rank, taking turns at the expert ranks
  bool colocated = false;  // every rank attends and serves experts (expert parallelism)
  bool serves = false;     // moe generate: exchanges follow each other without long gaps
  // Per dense block (by its index among the model's dense blocks): the expert rank that runs its
  // FFN, or -1 where the attention rank runs it; empty: all on the attention ranks.
  std::vector<int> dense_ranks;
  // The share of the lm_head's vocabulary whose logits the expert ranks compute (decode steps).
  double lm_head_on_experts = 0;
  ExpertMap expert_map;
  std::vector<std::string> devices;  // per rank, e.g. "cpu:1"
  std::string policy = "static";
  std::string profile_path, latency_model_path;  // for the policy of every attention rank
  uint64_t seed = 0;
  double deadline_seconds = 60;
  // A lost expert rank (dead, or silent past the deadline) is fenced and the run goes on with the
  // other replicas (--on-rank-failure continue), instead of ending.
  bool continue_on_rank_failure = false;
  // Memory-budgeted experts (--expert-memory, checked by rank 0): each process that holds experts
  // keeps this much of them resident (empty: all), what a token routed to another one gets, which
  // committee.
  std::string expert_memory;
  std::vector<int> committees;  // per sparse layer, from --memory-plan (else spread evenly)
  std::vector<std::vector<int>> committee_members;  // per sparse layer, from --memory-plan
  std::string on_missing_expert = "substitute";
  std::string committee = "dynamic";
  bool trace = false;
  std::string transport = "mpi";  // "nccl" when every rank has a GPU
  std::string error;              // non-empty: rank 0 rejected the run; every rank exits

  template <class A>
  void serialize(A& ar) {
    ar(model_dir, attention_ranks, micro_batches, colocated, serves, dense_ranks,
       lm_head_on_experts, expert_map, devices, policy, profile_path, latency_model_path, seed,
       deadline_seconds, continue_on_rank_failure, expert_memory, committees, committee_members,
       on_missing_expert, committee, trace, transport, error);
  }
  bool is_attention_rank(int rank) const { return rank < attention_ranks; }
  // The ranks that hold experts are first_expert_rank()..size-1.
  int first_expert_rank() const { return colocated ? 0 : attention_ranks; }
  // The ranks that only hold experts (none when co-located).
  int expert_ranks() const { return int(devices.size()) - attention_ranks; }
  // The expert rank that runs dense FFN block `dense_layer`, or -1 (the attention rank).
  int dense_rank(int dense_layer) const {
    return dense_layer >= 0 && dense_layer < int(dense_ranks.size()) ? dense_ranks[dense_layer]
                                                                     : -1;
  }
  // Where each dense block's FFN runs, one letter per block in order: 'x' on an expert rank, 'a'
  // on the attention rank (empty: all on the attention rank). Serving curves measured under one
  // placement describe runs with the same one only.
  std::string dense_placement() const {
    std::string s;
    for (int r : dense_ranks) s += r >= 0 ? 'x' : 'a';
    return s;
  }
  // The lm_head's vocabulary columns [first, second) that `rank` computes: an attention rank the
  // first ones, each expert rank its part of the rest, in rank order (so that ties, which go to
  // the lowest id, are decided by rank order too).
  std::pair<int, int> lm_head_columns(int rank, int vocab) const;
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
  MemoryPlan memory_plan;                   // --memory-plan's prediction, to print beside the run
};

// Rank 0's plan to every rank (collective).
RunPlan share_plan(const World& world, const RunPlan& plan_on_root);

}  // namespace moe
