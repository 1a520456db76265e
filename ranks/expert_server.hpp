// The serving side of the experts: loads the experts (dense FFNs, lm_head columns) the run plan
// places on this rank, queues the work headers the attention ranks send, and serves the k-th
// exchange of every active attention rank together: their blocks in, each (layer, expert) run
// once over the rows of every block (one grouped call), each block's results back to its sender.
// An expert rank runs one in its own loop (expert_rank.hpp); a co-located rank (--colocate) runs
// one inside its attention rank, serving while its own micro-batches wait.
#pragma once

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "model/checkpoint.hpp"
#include "model/resident_experts.hpp"
#include "model/weights.hpp"
#include "ranks/run_plan.hpp"
#include "router/residency.hpp"
#include "runtime/device.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/transport.hpp"
#include "runtime/wire.hpp"

namespace moe {

class ExpertServer {
 public:
  // An expert rank: its own device and recorder; tells rank 0 it is ready, then opens the data
  // transport (collective).
  ExpertServer(const World& world, const RunPlan& plan);
  // Inside an attention rank that also holds experts: its device and recorder, and a transport of
  // its own that takes work blocks and sends results on their own tags.
  ExpertServer(const World& world, const RunPlan& plan, Device& device, RankRecorder& recorder);
  ~ExpertServer();

  // Queues a work header and handles every other message an expert rank takes; false on Shutdown.
  bool take(const Envelope& e);
  // Serves every exchange for which each active attention rank's header has come.
  void serve_ready_exchanges();
  // True once every attention rank has said it sends no more work.
  bool attention_ranks_done() const;
  // Whether attention rank `r` may still send work.
  bool active(int r) const { return r >= 0 && r < int(active_.size()) && active_[r]; }
  // The active attention ranks whose next header a queued exchange waits for (none queued: none).
  std::vector<int> waited_for() const;
  // Waits for every result block to leave; the report then counts the touched weights.
  void finish();
  RankRecorder& recorder() { return *recorder_; }
  // Time spent serving exchanges (µs): inside an attention rank, part of its waits.
  double serve_us() const { return serve_us_; }

 private:
  // A work header from one attention rank, as it arrived.
  struct Arrived {
    int sender = 0;
    WorkHeader header;
    double at_us = 0;
  };
  // One attention rank's part of an exchange: where its rows are in the exchange's buffers.
  struct Part {
    Arrived work;
    int rows = 0;
    std::vector<float> in, out;  // its block, then its results (kept until their send completes)
    DataTransport::Ticket sending = 0;
  };

  void load();
  void serve_exchange(std::vector<Part>& parts);
  // p.out = each row's largest logit over this rank's lm_head columns and its id.
  double serve_lm_head(Part& p);
  ExpertWeights weights_of(const WorkHeader& h, int expert) const;
  void check(const Arrived& a) const;
  void echo(const Echo& request);
  void reclaim_sends(bool all);
  // --expert-memory: the residency over this rank's experts and their pages.
  void budget_experts();
  // One expert's load from the checkpoint on disk, for the profile: 0 on a GPU, where the experts
  // are not pages of the mapped checkpoint, and under a budget (the timing would unseat members).
  double time_load_us() const;

  const World& world_;
  const RunPlan& plan_;
  const int rank_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelConfig c_;
  ModelWeights weights_;
  std::vector<const SparseFfnWeights*> layers_;
  std::vector<const DenseFfnWeights*> dense_layers_;
  std::pair<int, int> lm_head_columns_{0, 0};  // [first, second) of the vocabulary
  std::vector<float> logits_;
  std::unique_ptr<Device> own_device_;
  Device* device_ = nullptr;
  std::unique_ptr<ExpertResidency> residency_;
  std::unique_ptr<ResidentExperts> pages_;
  std::unique_ptr<RankRecorder> own_recorder_;
  RankRecorder* recorder_ = nullptr;
  std::unique_ptr<DataTransport> transport_;
  std::vector<std::deque<Arrived>> waiting_;  // per attention rank, headers not yet served
  std::vector<uint8_t> active_;               // attention ranks that may still send work
  std::deque<std::vector<Part>> sending_;     // served exchanges whose results are on their way
  std::vector<float> merged_in_, merged_out_;
  double cpu_at_reply_ = 0;  // process CPU at the previous reply (or non-work request)
  double serve_us_ = 0;
};

}  // namespace moe
