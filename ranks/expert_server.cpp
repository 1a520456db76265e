#include "ranks/expert_server.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "model/device_weights.hpp"
#include "model/generation.hpp"
#include "ranks/expert_timing.hpp"
#include "runtime/cpu/cpu_quota.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/rank_fence.hpp"
#include "runtime/mpi/transport_factory.hpp"

namespace moe {
namespace {

// Its experts', dense FFNs' and lm_head columns' bytes.
size_t weight_bytes_of(const ModelWeights& w, const ModelConfig& c, int lm_head_columns) {
  size_t ffns = 0;
  for (const auto* stack : {&w.encoder, &w.decoder})
    for (const auto& block : *stack) {
      if (block.sparse)
        for (int e = 0; e < c.num_experts; ++e) ffns += block.moe.resident(e);
      else
        ffns += block.dense.wi != nullptr;
    }
  return (ffns * size_t(2) * c.d_ff + size_t(lm_head_columns)) * c.d_model * sizeof(float);
}

}  // namespace

ExpertServer::ExpertServer(const World& world, const RunPlan& plan)
    : world_(world), plan_(plan), rank_(world.rank()) {
  apply_quota_of(plan.devices.at(rank_), rank_);
  checkpoint_ = std::make_unique<Checkpoint>(plan.model_dir);
  c_ = checkpoint_->config();
  own_device_ = make_device(resolve_local_device(plan.devices.at(rank_), world.local_rank()));
  device_ = own_device_.get();
  load();
  own_recorder_ = std::make_unique<RankRecorder>(rank_, world.host(), plan.devices.at(rank_),
                                                 int(layers_.size()), plan.trace);
  recorder_ = own_recorder_.get();
  RankReport& report = recorder_->report();
  report.weight_bytes =
      weight_bytes_of(weights_, c_, lm_head_columns_.second - lm_head_columns_.first);
  report.resident_bytes = resident_bytes();
  send_control(0, Ready{rank_, report.resident_bytes, report.weight_bytes});
  transport_ = make_transport(world, plan.transport, plan.devices.at(rank_),
                              plan.deadline_seconds);  // collective, after Ready
  waiting_.resize(plan.attention_ranks);
  active_.assign(plan.attention_ranks, 1);
  cpu_at_reply_ = process_cpu_us();
}

ExpertServer::ExpertServer(const World& world, const RunPlan& plan, Device& device,
                           RankRecorder& recorder)
    : world_(world), plan_(plan), rank_(world.rank()), device_(&device), recorder_(&recorder) {
  MOE_CHECK(plan.transport == "mpi", "co-located ranks need the MPI data transport, not ",
            plan.transport);
  checkpoint_ = std::make_unique<Checkpoint>(plan.model_dir);
  c_ = checkpoint_->config();
  load();
  recorder.report().weight_bytes +=
      weight_bytes_of(weights_, c_, lm_head_columns_.second - lm_head_columns_.first);
  // The attention side sends work on kDataTag and takes results on kResultTag: the reverse here.
  transport_ = make_transport(world, plan.transport, plan.devices.at(rank_), plan.deadline_seconds,
                              DataTags{kResultTag, kDataTag});
  waiting_.resize(plan.attention_ranks);
  active_.assign(plan.attention_ranks, 1);
  cpu_at_reply_ = process_cpu_us();
}

ExpertServer::~ExpertServer() = default;

// The experts, dense FFNs and lm_head columns the plan places here, prepared for the device.
void ExpertServer::load() {
  LoadSelection selection;
  selection.dense = false;
  selection.dense_ffn_wanted = [&](int dense) { return plan_.dense_rank(dense) == rank_; };
  selection.expert_wanted = [&](int layer, int expert) {
    return plan_.expert_map.holds(rank_, layer, expert);
  };
  lm_head_columns_ = plan_.is_attention_rank(rank_) ? std::pair<int, int>{0, 0}
                                                    // it computes its own (all) columns
                                                    : plan_.lm_head_columns(rank_, c_.vocab_size);
  selection.lm_head = lm_head_columns_.second > lm_head_columns_.first;
  weights_ = load_weights(*checkpoint_, selection);
  for (const auto* stack : {&weights_.encoder, &weights_.decoder})
    for (const auto& block : *stack) {
      if (block.sparse)
        layers_.push_back(&block.moe);
      else
        dense_layers_.push_back(&block.dense);
    }
  prepare_weights(*device_, weights_, c_, lm_head_columns_.first, lm_head_columns_.second,
                  /*with_experts=*/plan_.expert_memory.empty());
  if (!plan_.expert_memory.empty()) budget_experts();
}

std::vector<int> ExpertServer::waited_for() const {
  std::vector<int> silent;
  bool queued = false;
  for (size_t a = 0; a < waiting_.size(); ++a) {
    queued = queued || !waiting_[a].empty();
    if (active_[a] && waiting_[a].empty()) silent.push_back(int(a));
  }
  return queued ? silent : std::vector<int>{};
}

bool ExpertServer::attention_ranks_done() const {
  return std::find(active_.begin(), active_.end(), 1) == active_.end();
}

void ExpertServer::finish() {
  reclaim_sends(true);
  recorder_->report().resident_bytes = resident_bytes();  // the touched weights count
  if (pages_) {
    pages_->drain();
    std::printf("rank %d: %s\n", rank_, pages_->summary().c_str());
    std::fflush(stdout);
  }
}

// Queues work headers and handles everything else; false once rank 0 says shut down.
bool ExpertServer::take(const Envelope& e) {
  const bool from_attention = e.sender >= 0 && e.sender < plan_.attention_ranks;
  switch (static_cast<MessageType>(e.type)) {
    case MessageType::kShutdown:
      MOE_CHECK(e.sender == 0, "rank ", e.sender, " sent Shutdown; only rank 0 may");
      return false;
    case MessageType::kProfileRequest: {
      const auto request = decode_message<ProfileRequest>(e);
      ProfileResult result =
          time_experts(request, layers_, *device_, c_, rank_, plan_.devices.at(rank_));
      if (request.time_load) result.load_us = time_load_us();
      send_control(e.sender, result);
      cpu_at_reply_ = process_cpu_us();
      return true;
    }
    case MessageType::kEcho:
      echo(decode_message<Echo>(e));
      cpu_at_reply_ = process_cpu_us();
      return true;
    case MessageType::kRankLost: {  // stop it if it runs here (it may only be paused)
      const auto notice = decode_message<RankLost>(e);
      MOE_CHECK(from_attention && notice.rank >= plan_.attention_ranks &&
                    notice.rank < world_.size() && notice.rank != rank_,
                "rank ", e.sender, " declared rank ", notice.rank, " lost, which it may not");
      world_.note_rank_lost();
      fence_if_local(world_, notice.rank);
      return true;
    }
    case MessageType::kAttentionDone:
      MOE_CHECK(from_attention, "rank ", e.sender, " is not an attention rank");
      active_[e.sender] = 0;
      return true;
    default:
      MOE_CHECK(from_attention, "rank ", e.sender, " sent work but is not an attention rank");
      MOE_CHECK(active_[e.sender], "rank ", e.sender, " sent work after it said it was done");
      waiting_[e.sender].push_back({e.sender, decode_message<WorkHeader>(e), now_us()});
      check(waiting_[e.sender].back());
      return true;
  }
}

// The k-th exchange of every active attention rank, as soon as each has sent its k-th header.
void ExpertServer::serve_ready_exchanges() {
  for (;;) {
    bool ready = false;
    for (size_t a = 0; a < waiting_.size(); ++a) {
      if (active_[a] && waiting_[a].empty()) return;
      ready = ready || !waiting_[a].empty();
    }
    if (!ready) return;
    std::vector<Part> parts;
    for (auto& queue : waiting_)
      if (!queue.empty()) {
        parts.emplace_back();
        parts.back().work = std::move(queue.front());
        queue.pop_front();
      }
    serve_exchange(parts);
  }
}

void ExpertServer::check(const Arrived& a) const {
  const WorkHeader& h = a.header;
  if (h.lm_head) {
    MOE_CHECK(plan_.lm_head_on_experts > 0 && h.segments.size() == 1 && h.segments[0].expert == 0 &&
                  h.segments[0].rows >= 0,
              "rank ", a.sender, " sent lm_head work that the plan gives no expert rank");
    return;
  }
  if (h.moe_layer < 0) {
    const bool mine = h.dense_layer >= 0 && h.dense_layer < int(dense_layers_.size()) &&
                      plan_.dense_rank(h.dense_layer) == rank_;
    MOE_CHECK(h.segments.empty() || (mine && h.segments.size() == 1 && h.segments[0].expert == 0 &&
                                     h.segments[0].rows >= 0),
              "rank ", a.sender, " sent work for dense FFN ", h.dense_layer,
              ", which this expert rank does not run");
    return;
  }
  MOE_CHECK(h.moe_layer < int(layers_.size()), "rank ", a.sender, " sent work for sparse layer ",
            h.moe_layer, " which does not exist");
  for (const auto& seg : h.segments) {
    MOE_CHECK(seg.expert >= 0 && seg.expert < c_.num_experts && seg.rows >= 0, "rank ", a.sender,
              " sent a bad segment (expert ", seg.expert, ", ", seg.rows, " rows)");
    MOE_CHECK(layers_[h.moe_layer]->resident(seg.expert), "rank ", a.sender,
              " sent tokens for expert ", seg.expert, " of sparse layer ", h.moe_layer,
              ", which is not placed on rank ", rank_);
  }
}

ExpertWeights ExpertServer::weights_of(const WorkHeader& h, int expert) const {
  if (h.moe_layer < 0) {
    const DenseFfnWeights& d = *dense_layers_[h.dense_layer];
    return {d.wi.get(), d.wo.get()};
  }
  return layers_[h.moe_layer]->expert(expert);
}

void ExpertServer::budget_experts() {
  const int L = int(layers_.size()), E = c_.num_experts;
  std::vector<std::vector<uint8_t>> held(L, std::vector<uint8_t>(E, 0));
  std::vector<int> held_per_layer(L, 0);
  int64_t all = 0;
  for (int l = 0; l < L; ++l)
    for (int e = 0; e < E; ++e)
      if (layers_[l]->resident(e)) {
        held[l][e] = 1;
        ++held_per_layer[l];
        ++all;
      }
  // --memory-plan: this rank seats the plan's members it holds; else its budget spread evenly.
  std::vector<std::vector<int>> members(L);
  for (int l = 0; l < L && !plan_.committee_members.empty(); ++l)
    for (int e : plan_.committee_members.at(l))
      if (held[l][e]) members[l].push_back(e);
  std::vector<int> committees;
  if (plan_.committee_members.empty())
    committees = spread_committees(experts_within(plan_.expert_memory, all, expert_bytes(c_)),
                                   held_per_layer);
  else
    for (const auto& m : members) committees.push_back(int(m.size()));
  residency_ = std::make_unique<ExpertResidency>(
      committees, budgeted_expert_norms(*checkpoint_, weights_, *device_),
      parse_miss_policy(plan_.on_missing_expert), parse_committee_kind(plan_.committee),
      plan_.seed + uint64_t(rank_), 0.8, 1.5, std::move(held));
  for (int l = 0; l < L && !plan_.committee_members.empty(); ++l) residency_->seat(l, members[l]);
  pages_ = std::make_unique<ResidentExperts>(c_, weights_, *residency_, *device_);
}

double ExpertServer::time_load_us() const {
  if (residency_ || device_->name().rfind("cpu", 0) != 0 ||
      !unmapped_expert_tensor(*checkpoint_, weights_).empty())
    return 0;
  return 1000 * time_expert_loads_ms(loaded_experts(weights_, c_), c_, /*map_back=*/true);
}

// `moe profile`'s link timing: the next block comes straight back.
void ExpertServer::echo(const Echo& request) {
  std::vector<float> block(request.floats);
  const Deadline deadline = Deadline::after(plan_.deadline_seconds);
  transport_->exchange({}, {{0, block.data(), block.size()}}, deadline, "receiving an echo block");
  transport_->exchange({{0, block.data(), block.size()}}, {}, deadline, "returning an echo block");
}

// Frees the buffers of exchanges whose results have arrived (all: waits for every one).
void ExpertServer::reclaim_sends(bool all) {
  while (!sending_.empty()) {
    bool done = true;
    for (auto& part : sending_.front()) {
      if (part.sending == 0) continue;
      if (all)
        transport_->wait(part.sending, Deadline::after(plan_.deadline_seconds),
                         "returning results to rank " + std::to_string(part.work.sender));
      else if (!transport_->test(part.sending)) {
        done = false;
        continue;
      }
      part.sending = 0;  // the ticket is spent
    }
    if (!done) return;
    sending_.pop_front();
  }
}

// One exchange: every part's block in, each (layer, expert) run once over the rows of every part
// (one grouped call), each part's results back to its sender.
void ExpertServer::serve_exchange(std::vector<Part>& parts) {
  const double t_serve = now_us();
  reclaim_sends(false);
  const int d = c_.d_model;
  const Deadline deadline = Deadline::after(plan_.deadline_seconds);
  std::vector<RecvBlock> recvs;
  int total = 0;
  for (auto& p : parts) {
    for (const auto& seg : p.work.header.segments) p.rows += seg.rows;
    p.in.resize(size_t(p.rows) * d);
    p.out.resize(p.work.header.lm_head ? size_t(p.rows) * kBestLogitFloats : p.in.size());
    recvs.push_back({p.work.sender, p.in.data(), p.in.size()});
    if (!p.work.header.lm_head) total += p.rows;
    recorder_->report().bytes_received += uint64_t(p.in.size()) * sizeof(float);
  }
  const WorkHeader& first = parts[0].work.header;
  const std::string where = "exchange " + std::to_string(first.exchange) + " (layer " +
                            std::to_string(first.moe_layer) + ", step " +
                            std::to_string(first.step) + ")";
  transport_->exchange({}, recvs, deadline, "receiving " + where);
  for (const auto& p : parts)
    recorder_->event("receive L" + std::to_string(p.work.header.moe_layer), p.work.at_us);

  // Segments of every part in (layer, expert) order, so that equal ones run as one group.
  struct Slice {
    ExpertWeights weights;
    int expert;
    size_t part;
    int row;  // within the part
    int rows;
  };
  std::vector<Slice> slices;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].work.header.lm_head) continue;
    int row = 0;
    for (const auto& seg : parts[i].work.header.segments) {
      slices.push_back(
          {weights_of(parts[i].work.header, seg.expert), seg.expert, i, row, seg.rows});
      row += seg.rows;
    }
  }
  // Equal weights are the same (layer, expert): sorting by them brings its slices together.
  std::stable_sort(slices.begin(), slices.end(),
                   [](const Slice& a, const Slice& b) { return a.weights.wi < b.weights.wi; });
  const bool one_part = parts.size() == 1;
  if (!one_part && merged_in_.size() < size_t(total) * d) {
    merged_in_.resize(size_t(total) * d);
    merged_out_.resize(merged_in_.size());
  }
  std::vector<ExpertGroup> groups;
  std::vector<int> group_experts;
  int row = 0;
  for (const Slice& s : slices) {
    if (!one_part)
      std::copy_n(parts[s.part].in.data() + size_t(s.row) * d, size_t(s.rows) * d,
                  merged_in_.data() + size_t(row) * d);
    const int at = one_part ? s.row : row;
    if (!groups.empty() && groups.back().weights.wi == s.weights.wi &&
        groups.back().first_row + groups.back().rows == at)
      groups.back().rows += s.rows;
    else {
      groups.push_back({s.weights, at, s.rows});
      group_experts.push_back(s.expert);
    }
    row += s.rows;
  }
  const double t_compute = now_us(), cpu_compute = process_cpu_us();
  double compute_us = 0;
  const bool budgeted = pages_ && first.moe_layer >= 0;
  std::vector<float> demand;  // every attention rank's, summed
  for (const Part& p : parts)
    for (size_t e = 0; e < p.work.header.demand.size(); ++e) {
      if (demand.size() <= e) demand.resize(e + 1, 0.0f);
      demand[e] += p.work.header.demand[e];
    }
  if (budgeted) {
    pages_->run(first.moe_layer, group_experts, groups,
                one_part ? parts[0].in.data() : merged_in_.data(),
                one_part ? parts[0].out.data() : merged_out_.data(), &demand);
    compute_us = recorder_->event("experts L" + std::to_string(first.moe_layer), t_compute);
  } else if (!groups.empty()) {
    device_->expert_ffn(groups, one_part ? parts[0].in.data() : merged_in_.data(),
                        one_part ? parts[0].out.data() : merged_out_.data(), d, c_.d_ff);
    compute_us = recorder_->event("experts L" + std::to_string(first.moe_layer), t_compute);
  }
  std::vector<double> lm_head_us(parts.size(), 0.0);
  for (size_t i = 0; i < parts.size(); ++i)
    if (parts[i].work.header.lm_head) lm_head_us[i] = serve_lm_head(parts[i]);
  const double cpu_done = process_cpu_us();
  row = 0;
  for (const Slice& s : slices) {
    if (!one_part)
      std::copy_n(merged_out_.data() + size_t(row) * d, size_t(s.rows) * d,
                  parts[s.part].out.data() + size_t(s.row) * d);
    row += s.rows;
  }
  const double t_return = now_us();
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    const WorkHeader& h = p.work.header;
    const double share = h.lm_head ? lm_head_us[i] : total > 0 ? compute_us * p.rows / total : 0.0;
    if (h.moe_layer >= 0)
      recorder_->served(h.moe_layer, p.rows, share);
    else
      recorder_->report().other_compute_us += share;
    WorkReply reply{h.exchange,
                    h.step,
                    h.moe_layer,
                    h.micro_batch,
                    h.lm_head ? lm_head_us[i] : compute_us,
                    t_compute - p.work.at_us,
                    cpu_compute - cpu_at_reply_,
                    {}};
    if (budgeted)
      for (int e = 0; e < c_.num_experts; ++e)
        reply.resident.push_back(residency_->resident(h.moe_layer, e) ? 1 : 0);
    send_control(p.work.sender, reply);
    p.sending = transport_->start({{p.work.sender, p.out.data(), p.out.size()}}, {});
    recorder_->report().bytes_sent += uint64_t(p.out.size()) * sizeof(float);
  }
  cpu_at_reply_ = cpu_done;
  recorder_->event("return L" + std::to_string(first.moe_layer), t_return);
  sending_.push_back(std::move(parts));
  serve_us_ += now_us() - t_serve;
}

double ExpertServer::serve_lm_head(Part& p) {
  const double start = now_us();
  const auto [first, last] = lm_head_columns_;
  const int columns = last - first, d = c_.d_model;
  logits_.resize(size_t(p.rows) * columns);
  if (columns > 0)
    device_->linear(p.in.data(), weights_.lm_head.get() + size_t(first) * d, logits_.data(), p.rows,
                    columns, d);
  for (int r = 0; r < p.rows; ++r) {
    // No columns here: a logit no other can lose to.
    const int best = columns > 0 ? greedy_token(logits_.data() + size_t(r) * columns, columns) : 0;
    const float logit =
        columns > 0 ? logits_[size_t(r) * columns + best] : -std::numeric_limits<float>::infinity();
    put_best_logit(p.out.data(), size_t(r), {logit, first + best});
  }
  return recorder_->event("lm_head", start);
}

}  // namespace moe
