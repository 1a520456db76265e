// The coordinator: rank 0 of a run, or the whole run in one process. It holds everything but the
// experts (all of them when alone), runs attention, norms, the router and generation, and sends
// each sparse layer's tokens to the expert ranks that the plan places them on.
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include "model/checkpoint.hpp"
#include "model/switch_model.hpp"
#include "model/tokenizer.hpp"
#include "ranks/run_plan.hpp"
#include "router/dispatch_policy.hpp"
#include "runtime/device.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/transport.hpp"

namespace moe {

class Coordinator {
 public:
  // Loads its weights; under mpirun waits until every expert rank has loaded its experts, then
  // opens the data transport.
  Coordinator(World& world, CheckedRun run);
  ~Coordinator();

  SwitchModel& model() { return *model_; }
  const ModelConfig& config() const { return checkpoint_->config(); }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const RunPlan& plan() const { return run_.plan; }
  const CheckedRun& run() const { return run_; }
  World& world() { return world_; }
  DataTransport& transport() { return *transport_; }

  // Ends the run: expert ranks shut down and report; prints the per-rank table and writes the
  // trace.
  void finish(int64_t generated_tokens, double wall_seconds);

 private:
  void wait_for_expert_ranks();
  void record_routing(const std::string& path);

  World& world_;
  CheckedRun run_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<RankRecorder> recorder_;
  std::unique_ptr<DataTransport> transport_;
  std::unique_ptr<DispatchPolicy> policy_;
  std::unique_ptr<ExpertExecutor> executor_;
  std::unique_ptr<ExpertExecutor> recording_;
  std::unique_ptr<SwitchModel> model_;
  std::unique_ptr<std::ofstream> routing_out_, samples_out_;
  int64_t routing_batch_ = -1;
};

}  // namespace moe
