// A run of the model in whatever world it was launched in. Alone, the process holds the whole
// model. Under mpirun, rank 0 (the coordinator) holds everything but the experts and sends each
// sparse layer's tokens to the expert ranks, which serve until the session finishes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/program_options/options_description.hpp>

#include "model/checkpoint.hpp"
#include "model/switch_model.hpp"
#include "model/tokenizer.hpp"
#include "ranks/remote_experts.hpp"
#include <fstream>

#include "router/dispatch_policy.hpp"
#include "router/latency_model.hpp"
#include "router/profile.hpp"
#include "runtime/device.hpp"
#include "runtime/messages.hpp"
#include "runtime/mpi_transport.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/world.hpp"

namespace moe {

struct SessionOptions {
  std::string model_dir;
  std::string expert_map_path;  // empty: round-robin over the expert ranks
  std::string policy = "static";
  uint64_t seed = 1;
  double deadline_seconds = 60;
  int threads = 1;
  std::string trace_path;
  size_t memory_per_rank_bytes = 0;  // 0: no budget check beyond the machine's memory
  std::string devices;                // comma-separated per rank, e.g. "cpu:1,cpu:1,cpu:1@0.5"
  std::string profile_path;           // profile.json (latency-aware policy, latency samples)
  std::string latency_model_path;     // model.bin (latency-aware policy)
  std::string record_routing_path;    // JSONL routing trace of every sparse-layer call
  std::string record_latency_samples_path;  // CSV latency samples (needs a profile)
  std::vector<std::string> extra_expert_maps;  // expert ranks also load these maps' experts
  // Run on rank 0 before the plan is broadcast: a throw rejects the run before any work starts.
  std::function<void(const ModelConfig&)> check_inputs;

  // Adds --model, --expert-map, --policy, --seed, --deadline, --threads, --trace, --memory-per-rank.
  void add_to(boost::program_options::options_description& opts);
};

class Session {
 public:
  Session(World& world, const SessionOptions& options);
  ~Session();

  // True on rank 0 (or when alone). On other ranks the constructor has already served the run.
  bool is_coordinator() const { return world_.rank() == 0; }
  int exit_code() const { return exit_code_; }

  SwitchModel& model() { return *model_; }
  const ModelConfig& config() const { return checkpoint_->config(); }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const RunPlan& plan() const { return plan_; }
  // What --profile and --latency-model held (read once, on rank 0, while the plan was checked).
  const Profile& profile() const { return profile_; }
  std::shared_ptr<const LatencyModel> latency_model() const { return latency_model_; }
  World& world() { return world_; }
  DataTransport& transport() { return *transport_; }

  // Ends the run: expert ranks shut down and report; rank 0 prints the per-rank table and writes
  // the trace.
  void finish(int64_t generated_tokens, double wall_seconds);

 private:
  // Checks everything on rank 0 before the run starts; keeps the profile and latency model it read.
  RunPlan make_plan(const SessionOptions& options);

  World& world_;
  SessionOptions options_;
  RunPlan plan_;
  int exit_code_ = 0;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<RankRecorder> recorder_;
  std::unique_ptr<DataTransport> transport_;
  // The executor is built before the transport exists (the transport is created after every rank
  // reports ready); it reaches it through this forwarder.
  struct TransportRef final : DataTransport {
    std::unique_ptr<DataTransport>* target;
    explicit TransportRef(std::unique_ptr<DataTransport>* t) : target(t) {}
    std::string name() const override { return (*target)->name(); }
    void exchange(const std::vector<SendBlock>& s, const std::vector<RecvBlock>& r, const Deadline& d,
                  const std::string& doing) override {
      (*target)->exchange(s, r, d, doing);
    }
    void start_sends(const std::vector<SendBlock>& s) override { (*target)->start_sends(s); }
    void finish_sends(const Deadline& d, const std::string& doing) override {
      (*target)->finish_sends(d, doing);
    }
  } transport_ref_{&transport_};
  std::unique_ptr<DispatchPolicy> policy_;
  std::unique_ptr<ExpertExecutor> executor_;
  std::unique_ptr<ExpertExecutor> recording_;
  std::unique_ptr<SwitchModel> model_;
  std::unique_ptr<std::ofstream> routing_out_, samples_out_;
  Profile profile_;
  std::shared_ptr<const LatencyModel> latency_model_;
  int64_t routing_batch_ = -1;
};

}  // namespace moe
