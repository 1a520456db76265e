// An attention rank: rank 0 of a run (the lead, which also reads the input and writes the
// output), one of the data-parallel attention ranks 0..M-1, or the whole run in one process. It
// holds everything but the experts (all of them when alone), runs embeddings, attention, norms,
// the router, dense blocks (unless the plan puts them on the expert ranks) and generation, and
// sends each sparse layer's tokens to the expert ranks that the plan places them on. Its batch
// runs as micro-batch lanes that take turns, so that one lane computes while another's tokens
// are at the expert ranks.
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include "model/budgeted_experts.hpp"
#include "model/checkpoint.hpp"
#include "model/switch_model.hpp"
#include "model/tokenizer.hpp"
#include "ranks/expert_server.hpp"
#include "ranks/lanes.hpp"
#include "ranks/remote_experts.hpp"
#include "ranks/run_plan.hpp"
#include "router/dispatch_policy.hpp"
#include "router/residency.hpp"
#include "runtime/device.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/transport.hpp"

namespace moe {

class Coordinator {
 public:
  // Loads its weights; under mpirun, the lead waits until every expert rank has loaded its
  // experts, then every rank opens the data transport.
  Coordinator(World& world, CheckedRun run);
  ~Coordinator();

  bool is_lead() const { return world_.rank() == 0; }
  int lanes() const { return int(models_.size()); }
  // The model as lane `lane` runs it (its own workspace and expert executor).
  SwitchModel& model(int lane = 0) { return *models_.at(lane); }
  // Runs body(lane) on every lane, taking turns at the expert ranks.
  void run_lanes(const std::function<void(int lane)>& body);
  const ModelConfig& config() const { return checkpoint_->config(); }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const RunPlan& plan() const { return run_.plan; }
  const CheckedRun& run() const { return run_; }
  World& world() { return world_; }
  DataTransport& transport() { return *transport_; }
  // The exchanges with the expert ranks (null when alone).
  ExpertExchanges* exchanges() { return exchanges_.get(); }
  RankRecorder& recorder() { return *recorder_; }
  // Tells the expert ranks this attention rank sends no more work (once).
  void done_with_experts();
  // Whether this rank also serves experts (--colocate).
  bool serves_experts() const { return server_ != nullptr; }
  // Co-located: waits until `ready` holds, moving the exchanges on and serving the other ranks'
  // work meanwhile; throws naming `doing` after `seconds` in which nothing came.
  void wait_serving(const std::function<bool()>& ready, double seconds, const std::string& doing);

  // Ends the run. The lead shuts every other rank down, collects their reports and prints the
  // per-rank table and writes the trace; another attention rank waits for that and reports.
  void finish(int64_t generated_tokens, double wall_seconds);

 private:
  // Rank 0: waits for `count` Ready messages (expert ranks, or co-located ranks, loaded).
  void wait_for_ranks(int count);
  void serve_experts_here();
  // After a run that went on without lost ranks (--on-rank-failure continue): says so, and names
  // those no live rank could stop.
  void end_without_lost_ranks();
  void make_lane_models();
  // --expert-memory in one process: the residency and the executor that honours it.
  std::unique_ptr<ExpertExecutor> make_budgeted_executor();
  void report_budget(int64_t generated_tokens, double wall_seconds) const;
  void record_routing(const std::string& path);

  World& world_;
  CheckedRun run_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<RankRecorder> recorder_;
  double load_seconds_ = 0;   // this rank's checkpoint, weights and device preparation
  double ready_seconds_ = 0;  // until every rank is ready to serve
  std::unique_ptr<DataTransport> transport_;
  std::unique_ptr<DispatchPolicy> policy_;
  std::unique_ptr<ExpertExchanges> exchanges_;
  std::unique_ptr<ExpertResidency> residency_;
  BudgetedExpertExecutor* budgeted_ = nullptr;  // executors_[0] under a memory budget
  Lanes lane_runner_;
  std::vector<std::unique_ptr<ExpertExecutor>> executors_, recording_;  // per lane
  std::vector<std::unique_ptr<SwitchModel>> models_;                    // per lane
  std::unique_ptr<ExpertServer> server_;  // co-located: this rank's experts, served in its waits
  bool shutdown_ = false;                 // co-located: rank 0 ended the run
  std::unique_ptr<std::ofstream> routing_out_, samples_out_;
  int64_t routing_batch_ = -1;
  bool said_done_ = false;
};

}  // namespace moe
