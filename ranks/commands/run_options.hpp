// The options every distributed sub-command shares (--model, --expert-map, --policy, ...), and
// their check on rank 0 before any work starts.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "ranks/run_plan.hpp"

namespace moe {

// The options every distributed sub-command shares.
struct RunOptions {
  std::string model_dir;
  std::string expert_map_path;  // empty: round-robin over the expert ranks
  std::string policy = "static";
  uint64_t seed = 1;
  double deadline_seconds = 60;
  std::string on_rank_failure = "abort";  // or "continue" (moe generate)
  int threads = 1;
  std::string trace_path;
  size_t memory_per_rank_bytes = 0;  // 0: no budget check beyond the machine's memory
  std::string devices;               // comma-separated per rank, e.g. "cpu:1,cpu:1,cpu:1@0.5"
  std::string weights = "f32";       // weight format of every device that names none
  std::string profile_path;          // profile.json (latency-aware policy, latency samples)
  std::string latency_model_path;    // model.bin (latency-aware policy)
  std::string record_routing_path;   // JSONL routing trace of every sparse-layer call
  std::string record_latency_samples_path;       // CSV latency samples (needs a profile)
  std::vector<std::string> extra_expert_maps;    // expert ranks also load these maps' experts
  std::string expert_memory;                     // empty: every expert resident
  std::string on_missing_expert = "substitute";  // with --expert-memory
  std::string committee = "dynamic";             // with --expert-memory
  std::string memory_plan_path;                  // committees from moe plan-memory (one process)
  int attention_ranks = 1;
  bool colocate = false;           // every rank attends and holds its share of the experts
  int micro_batches = 0;           // 0: chosen from the batch and the layout
  std::string dense_ffn = "auto";  // where dense FFN blocks run: attention, experts, split, auto
  std::string lm_head_on_experts = "auto";  // share of the lm_head's vocabulary, or auto
  // Set by the command: whether it serves requests (micro-batch lanes, several attention ranks)
  // and with what batch per attention rank.
  bool serves = false;
  int batch_size = 1;
  // Set by `moe profile --serving-rows`: it decodes as `moe generate` would, with its defaults for
  // where the dense FFNs and the lm_head run.
  bool measures_serving = false;

  // --model, --expert-map, --policy, --seed, --deadline, --on-rank-failure, --threads, --trace,
  // --memory-per-rank,
  // --devices, --weights, --profile, --latency-model, --record-routing, --record-latency-samples,
  // --expert-memory, --on-missing-expert, --committee, --memory-plan,
  // --attention-ranks, --colocate, --micro-batches, --dense-ffn, --lm-head-on-experts.
  void add_to(boost::program_options::options_description& opts);
};

// config.json of --model; throws naming the file and field.
ModelConfig load_run_config(const RunOptions& options);

// Checks the options against the model and the world size and builds the plan with what rank 0
// keeps; throws on the first bad input (rank 0 only: it reads the files).
CheckedRun check_run(const RunOptions& options, const ModelConfig& config, int world_size);

}  // namespace moe
