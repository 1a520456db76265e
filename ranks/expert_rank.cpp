#include "ranks/expert_rank.hpp"

#include <thread>

#include "model/checkpoint.hpp"
#include "model/weights.hpp"
#include "ranks/expert_timing.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/transport_factory.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
namespace {

size_t weight_bytes_of(const ModelWeights& w, const ModelConfig& c) {
  size_t experts = 0;
  for (const auto* stack : {&w.encoder, &w.decoder})
    for (const auto& block : *stack)
      if (block.sparse)
        for (int e = 0; e < c.num_experts; ++e) experts += block.moe.resident(e);
  return experts * size_t(2) * c.d_model * c.d_ff * sizeof(float);
}

// One rank's serving state: its experts, device, transport and report.
class ExpertRank {
 public:
  ExpertRank(const World& world, const RunPlan& plan);
  // Serves requests until the coordinator says shut down, then sends the report.
  void serve();

 private:
  void serve_work(const WorkHeader& header, double t_arrived);
  void echo(const Echo& request);

  const World& world_;
  const RunPlan& plan_;
  const int rank_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelConfig c_;
  ModelWeights weights_;
  std::vector<const SparseFfnWeights*> layers_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<RankRecorder> recorder_;
  std::unique_ptr<DataTransport> transport_;
  std::vector<float> rows_in_, rows_out_;
  std::vector<ExpertGroup> groups_;
  double cpu_at_reply_ = 0;  // process CPU at the previous reply (or non-work request)
};

ExpertRank::ExpertRank(const World& world, const RunPlan& plan)
    : world_(world), plan_(plan), rank_(world.rank()) {
  apply_quota_of(plan.devices.at(rank_), rank_);
  checkpoint_ = std::make_unique<Checkpoint>(plan.model_dir);
  c_ = checkpoint_->config();
  LoadSelection selection;
  selection.dense = false;
  selection.expert_wanted = [&](int layer, int expert) {
    return plan.expert_map.holds(rank_, layer, expert);
  };
  weights_ = load_weights(*checkpoint_, selection);
  for (const auto* stack : {&weights_.encoder, &weights_.decoder})
    for (const auto& block : *stack)
      if (block.sparse) layers_.push_back(&block.moe);
  device_ = make_device(resolve_local_device(plan.devices.at(rank_), world.local_rank()));
  recorder_ = std::make_unique<RankRecorder>(rank_, world.host(), plan.devices.at(rank_),
                                             int(layers_.size()), plan.trace);
  RankReport& report = recorder_->report();
  report.weight_bytes = weight_bytes_of(weights_, c_);
  report.resident_bytes = resident_bytes();
  send_control(0, Ready{rank_, report.resident_bytes, report.weight_bytes});
  transport_ = make_transport(world, plan.transport, plan.devices.at(rank_),
                              plan.deadline_seconds);  // collective, after Ready
  cpu_at_reply_ = process_cpu_us();
}

void ExpertRank::serve() {
  for (;;) {
    const double t_idle = now_us();
    // Idle between requests is normal; the deadline only catches a coordinator that vanished.
    const Envelope e =
        receive_control(world_, 0, Deadline::after(plan_.deadline_seconds * 10),
                        "expert rank " + std::to_string(rank_) + " waiting for work");
    const double t_arrived = now_us();
    recorder_->report().wait_us += t_arrived - t_idle;
    switch (static_cast<MessageType>(e.type)) {
      case MessageType::kShutdown:
        recorder_->report().resident_bytes = resident_bytes();  // the touched weights count
        send_control(0, recorder_->report());
        return;
      case MessageType::kProfileRequest:
        send_control(0, time_experts(decode_message<ProfileRequest>(e), layers_, *device_, c_,
                                     rank_, plan_.devices.at(rank_)));
        cpu_at_reply_ = process_cpu_us();
        break;
      case MessageType::kEcho:
        echo(decode_message<Echo>(e));
        cpu_at_reply_ = process_cpu_us();
        break;
      default:
        serve_work(decode_message<WorkHeader>(e), t_arrived);
    }
  }
}

// `moe profile`'s link timing: the next block comes straight back.
void ExpertRank::echo(const Echo& request) {
  std::vector<float> block(request.floats);
  const Deadline deadline = Deadline::after(plan_.deadline_seconds);
  transport_->exchange({}, {{0, block.data(), block.size()}}, deadline, "receiving an echo block");
  transport_->exchange({{0, block.data(), block.size()}}, {}, deadline, "returning an echo block");
}

// One sparse-layer block: receive the rows, run each expert on its segment, reply, return them.
void ExpertRank::serve_work(const WorkHeader& header, double t_arrived) {
  const int L = header.moe_layer, d = c_.d_model;
  MOE_CHECK(L >= 0 && L < int(layers_.size()), "rank 0 sent work for sparse layer ", L,
            " which does not exist");
  const SparseFfnWeights& layer = *layers_[L];
  groups_.clear();
  int rows = 0;
  for (const auto& seg : header.segments) {
    MOE_CHECK(seg.expert >= 0 && seg.expert < c_.num_experts && seg.rows >= 0,
              "rank 0 sent a bad segment (expert ", seg.expert, ", ", seg.rows, " rows)");
    MOE_CHECK(layer.resident(seg.expert), "rank 0 sent tokens for expert ", seg.expert,
              " of sparse layer ", L, ", which is not placed on rank ", rank_);
    groups_.push_back({layer.expert(seg.expert), rows, seg.rows});
    rows += seg.rows;
  }
  if (rows_in_.size() < size_t(rows) * d) {
    rows_in_.resize(size_t(rows) * d);
    rows_out_.resize(size_t(rows) * d);
  }
  const std::string where =
      "sparse layer " + std::to_string(L) + ", step " + std::to_string(header.step);
  const Deadline deadline = Deadline::after(plan_.deadline_seconds);
  transport_->exchange({}, {{0, rows_in_.data(), size_t(rows) * d}}, deadline,
                       "receiving " + where);
  recorder_->report().bytes_received += uint64_t(rows) * d * sizeof(float);
  recorder_->event("receive L" + std::to_string(L), t_arrived);
  const double t_compute = now_us(), cpu_compute = process_cpu_us();
  device_->expert_ffn(groups_, rows_in_.data(), rows_out_.data(), d, c_.d_ff);
  const double compute_us = recorder_->event("experts L" + std::to_string(L), t_compute);
  recorder_->served(L, rows, compute_us);
  const double cpu_done = process_cpu_us();
  send_control(0, WorkReply{header.step, L, header.micro_batch, compute_us, t_compute - t_arrived,
                            cpu_compute - cpu_at_reply_});
  cpu_at_reply_ = cpu_done;
  const double t_return = now_us();
  transport_->exchange({{0, rows_out_.data(), size_t(rows) * d}}, {}, deadline,
                       "returning " + where);
  recorder_->report().bytes_sent += uint64_t(rows) * d * sizeof(float);
  recorder_->event("return L" + std::to_string(L), t_return);
}

}  // namespace

int run_expert_rank(const World& world, const RunPlan& plan) {
  try {
    ExpertRank(world, plan).serve();
    return 0;
  } catch (const std::exception& e) {
    // Tell the coordinator, which names this rank in its one-line error and ends the run; if it
    // does not within the deadline, end the run from here.
    try {
      send_control(0, ErrorMessage{world.rank(), world.host(), e.what()});
    } catch (...) {
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(plan.deadline_seconds));
    std::fprintf(stderr, "moe: error: rank %d (host %s): %s\n", world.rank(), world.host().c_str(),
                 e.what());
    world.abort(1);
  }
}

}  // namespace moe
