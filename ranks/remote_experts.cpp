#include "ranks/remote_experts.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "ranks/lanes.hpp"
#include "runtime/activity.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/control_plane.hpp"
#include "runtime/mpi/rank_fence.hpp"

namespace moe {

// One lane's exchange: the rows it sent each rank, the buffers they travel in, the replies.
struct ExpertExchanges::InFlight {
  bool active = false;
  uint64_t exchange = 0;
  int layer = -1;  // the sparse layer, or -1 for a dense FFN or the lm_head
  int dense_layer = -1;
  bool lm_head = false;
  int64_t step = 0;
  std::vector<int> rank_of_row, slot_of_row;   // per row of rows_in
  std::vector<float> demand;                   // a sparse layer's (WorkHeader::demand)
  std::vector<std::vector<float>> send, recv;  // per rank
  DataTransport::Ticket sends = 0, recvs = 0;
  bool received = false;
  bool sent = false;  // only tracked once retired
  // A sparse layer's inputs, to start it again without a lost rank (they outlive the exchange).
  const GateResult* gate = nullptr;
  const ExpertDispatch* dispatch = nullptr;
  const ExpertMap* map = nullptr;
  DispatchPolicy* policy = nullptr;
  std::vector<uint8_t> replied;
  int replies_missing = 0;
  double t_dispatch = 0, t_wait = 0;
  Deadline deadline;
  ExchangeStats stats;
  std::string where() const {
    return (layer >= 0 ? "sparse layer " + std::to_string(layer)
            : lm_head  ? std::string("the lm_head")
                       : "dense FFN " + std::to_string(dense_layer)) +
           ", step " + std::to_string(step);
  }
  // For trace events: "L3", "D2", "H".
  std::string label() const {
    return layer >= 0 ? "L" + std::to_string(layer)
           : lm_head  ? "H"
                      : "D" + std::to_string(dense_layer);
  }
};

ExpertExchanges::ExpertExchanges(const World& world, DataTransport& transport,
                                 const ExchangeOptions& options, RankRecorder& recorder)
    : world_(world),
      transport_(transport),
      options_(options),
      recorder_(recorder),
      lost_(world.size(), 0),
      resident_(world.size()) {
  for (int i = 0; i < options.lanes; ++i) {
    lanes_.push_back(std::make_unique<InFlight>());
    lanes_.back()->send.resize(world.size());
    lanes_.back()->recv.resize(world.size());
  }
}

ExpertExchanges::~ExpertExchanges() = default;

void ExpertExchanges::start_sparse(int lane, int64_t step, int moe_layer, const GateResult& gate,
                                   const ExpertDispatch& dispatch, const float* rows_in,
                                   const ExpertMap& map, DispatchPolicy& policy,
                                   const std::vector<float>& demand) {
  InFlight& x = *lanes_.at(lane);
  MOE_CHECK(!x.active, "lane ", lane, " started an exchange before finishing its last one");
  const int N = world_.size(), d = options_.d_model;
  x.t_dispatch = now_us();
  x.gate = &gate;
  x.dispatch = &dispatch;
  x.map = &map;
  x.policy = &policy;
  const ExpertMap& placed = live(map);
  // Only where a miss is loaded anyway (wait, on-demand): under substitute or skip a token sent to
  // a non-resident replica would make that rank load and seat it, unseating a member.
  const bool loads =
      options_.miss_policy == MissPolicy::kWait || options_.miss_policy == MissPolicy::kOnDemand;
  const bool priced = options_.expert_budgets && loads && policy.weighs_residency();
  if (options_.expert_budgets)
    policy.set_residency([this](int r, int l, int e) { return reported_resident(r, l, e); });
  policy.assign(moe_layer, dispatch, gate,
                options_.expert_budgets && !priced ? preferring_resident(placed) : placed,
                x.rank_of_row);
  x.stats.policy_us = now_us() - x.t_dispatch;
  // Per rank: segments in expert order, rows copied into one contiguous block.
  std::vector<WorkHeader> headers(N);
  x.stats.rows_per_rank.assign(N, 0);
  x.slot_of_row.resize(dispatch.rows());
  for (int e = 0; e + 1 < int(dispatch.offsets.size()); ++e)
    for (int i = dispatch.offsets[e]; i < dispatch.offsets[e + 1]; ++i) {
      const int r = x.rank_of_row[i];
      auto& segs = headers[r].segments;
      if (segs.empty() || segs.back().expert != e) segs.push_back({e, 0});
      ++segs.back().rows;
      x.slot_of_row[i] = x.stats.rows_per_rank[r]++;
    }
  for (int r = options_.first_expert_rank; r < N; ++r)
    x.send[r].resize(size_t(x.stats.rows_per_rank[r]) * d);
  for (int i = 0; i < dispatch.rows(); ++i)
    std::memcpy(x.send[x.rank_of_row[i]].data() + size_t(x.slot_of_row[i]) * d,
                rows_in + size_t(i) * d, sizeof(float) * d);
  x.layer = moe_layer;
  x.dense_layer = -1;
  x.lm_head = false;
  x.demand = demand;
  for (int r = options_.first_expert_rank; r < N; ++r) headers[r].demand = demand;
  launch(x, headers, step, lane);
}

ExpertExchanges::InFlight& ExpertExchanges::begin_unrouted(int lane) {
  InFlight& x = *lanes_.at(lane);
  MOE_CHECK(!x.active, "lane ", lane, " started an exchange before finishing its last one");
  x.t_dispatch = now_us();
  x.stats.policy_us = 0;
  x.stats.rows_per_rank.assign(world_.size(), 0);
  return x;
}

void ExpertExchanges::start_dense(int lane, int64_t step, int dense_layer, int rank, int rows,
                                  const float* x_rows) {
  InFlight& x = begin_unrouted(lane);
  const int N = world_.size(), d = options_.d_model;
  MOE_CHECK(!is_lost(rank), "rank ", rank, " (host ", world_.host_of(rank),
            ") was lost, and dense FFN ", dense_layer, " runs there only");
  x.stats.rows_per_rank[rank] = rows;
  x.rank_of_row.assign(rows, rank);
  x.slot_of_row.resize(rows);
  for (int i = 0; i < rows; ++i) x.slot_of_row[i] = i;
  std::vector<WorkHeader> headers(N);
  headers[rank].segments = {{0, rows}};
  for (int r = options_.first_expert_rank; r < N; ++r) x.send[r].clear();
  x.send[rank].assign(x_rows, x_rows + size_t(rows) * d);
  x.layer = -1;
  x.dense_layer = dense_layer;
  x.lm_head = false;
  launch(x, headers, step, lane);
}

void ExpertExchanges::start_lm_head(int lane, int64_t step, int rows, const float* states) {
  InFlight& x = begin_unrouted(lane);
  const int N = world_.size(), d = options_.d_model;
  MOE_CHECK(lost_order_.empty(), "rank ", lost_order_.front(), " (host ",
            world_.host_of(lost_order_.front()),
            ") was lost, and part of the lm_head runs there only");
  x.rank_of_row.clear();
  x.slot_of_row.clear();
  std::vector<WorkHeader> headers(N);
  for (int r = options_.first_expert_rank; r < N; ++r) {
    x.stats.rows_per_rank[r] = rows;
    headers[r].segments = {{0, rows}};
    headers[r].lm_head = true;
    x.send[r].assign(states, states + size_t(rows) * d);
  }
  x.layer = -1;
  x.dense_layer = -1;
  x.lm_head = true;
  launch(x, headers, step, lane);
}

// Posts the receives of the results (before anyone can send them), then sends every expert rank
// its header and its block.
void ExpertExchanges::launch(InFlight& x, std::vector<WorkHeader>& headers, int64_t step,
                             int lane) {
  const int N = world_.size(), first = options_.first_expert_rank;
  x.step = step;
  x.exchange = next_exchange_++;
  ++totals_.started;
  if (x.dense_layer >= 0) ++totals_.dense_started;
  if (x.lm_head) ++totals_.lm_head_started;
  x.active = true;
  x.received = false;
  x.stats.feedback.clear();
  x.replied.assign(N, 0);
  x.replies_missing = 0;
  std::vector<RecvBlock> recvs;
  for (int r = first; r < N; ++r) {
    if (is_lost(r)) {  // it has no rows; nothing goes to it, no reply is awaited
      x.replied[r] = 1;
      continue;
    }
    ++x.replies_missing;
    // The lm_head's reply is each row's largest logit and its id.
    x.recv[r].resize(x.lm_head ? size_t(x.stats.rows_per_rank[r]) * kBestLogitFloats
                               : x.send[r].size());
    recvs.push_back({r, x.recv[r].data(), x.recv[r].size()});
  }
  x.recvs = transport_.start({}, recvs);
  std::vector<SendBlock> sends;
  for (int r = first; r < N; ++r) {
    if (is_lost(r)) continue;
    WorkHeader& h = headers[r];
    h.exchange = x.exchange;
    h.step = step;
    h.moe_layer = x.layer;
    h.dense_layer = x.dense_layer;
    h.micro_batch = lane;
    send_control(r, h);
    sends.push_back({r, x.send[r].data(), x.send[r].size()});
    recorder_.report().bytes_sent += uint64_t(x.send[r].size()) * sizeof(float);
  }
  x.sends = transport_.start(sends, {});
  x.deadline = Deadline::after(options_.deadline_seconds);
  recorder_.event("dispatch " + x.label(), x.t_dispatch, lane);
  x.t_wait = now_us();
}

ExpertExchanges::InFlight* ExpertExchanges::find(uint64_t exchange) {
  for (auto& x : lanes_)
    if (x->active && x->exchange == exchange) return x.get();
  return nullptr;
}

bool ExpertExchanges::ready(int lane) const {
  const InFlight& x = *lanes_.at(lane);
  return x.active && x.replies_missing == 0 && x.received;
}

void ExpertExchanges::progress() {
  while (auto e = try_receive_control(world_, kAnySource)) {
    if (take_notice(*e)) continue;
    if (take_other_ && take_other_(*e)) continue;
    if (e->type == static_cast<uint32_t>(MessageType::kError)) {
      const auto err = decode_message<ErrorMessage>(*e);
      std::string where = "work";
      for (auto& x : lanes_)
        if (x->active) where = x->where();
      MOE_FAIL("rank ", err.rank, " (host ", err.host, ") failed at ", where, ": ", err.what);
    }
    const auto reply = decode_message<WorkReply>(*e);
    InFlight* x = find(reply.exchange);
    const auto retired = [&](const auto& r) { return r->exchange == reply.exchange; };
    // A live rank's answer to an exchange started again, or a lost rank that was only paused.
    if (x == nullptr && std::any_of(retired_.begin(), retired_.end(), retired)) continue;
    if (is_lost(e->sender)) continue;
    MOE_CHECK(x != nullptr, "rank ", e->sender, " replied to exchange ", reply.exchange,
              ", which is not in flight");
    MOE_CHECK(e->sender >= options_.first_expert_rank && !x->replied[e->sender], "rank ", e->sender,
              " replied twice, or unasked, at ", x->where());
    x->replied[e->sender] = 1;
    --x->replies_missing;
    totals_.expert_compute_us += reply.compute_us;
    if (x->dense_layer >= 0) totals_.dense_compute_us += reply.compute_us;
    if (x->lm_head) totals_.lm_head_compute_us += reply.compute_us;
    if (!reply.resident.empty() && x->layer >= 0) {
      auto& layers = resident_.at(e->sender);
      if (int(layers.size()) <= x->layer) layers.resize(x->layer + 1);
      layers[x->layer] = reply.resident;
    }
    // From the start of dispatch: a fast rank may answer before the slowest send has completed.
    x->stats.feedback.push_back({e->sender, x->layer, x->stats.rows_per_rank[e->sender],
                                 now_us() - x->t_dispatch, reply.compute_us, reply.queue_us,
                                 reply.other_cpu_us});
  }
  if (serve_) serve_();
  for (auto& r : retired_) {  // their MPI requests are released as they complete
    if (!r->received) r->received = transport_.test(r->recvs);
    if (!r->sent) r->sent = transport_.test(r->sends);
  }
  for (size_t lane = 0; lane < lanes_.size(); ++lane) {
    InFlight* x = lanes_[lane].get();
    if (!x->active || x->received) continue;
    if (x->replies_missing == 0) x->received = transport_.test(x->recvs);
    if (x->received || !x->deadline.expired()) continue;
    if (options_.continue_on_rank_failure) {
      // Every rank that has not answered, or whose results have not all come, is lost.
      std::vector<int> late;
      for (int r = options_.first_expert_rank; r < world_.size(); ++r)
        if (!x->replied[r]) late.push_back(r);
      if (late.empty()) late = transport_.unfinished_peers(x->recvs);
      if (!late.empty()) {
        char seconds[32];
        std::snprintf(seconds, sizeof(seconds), "%g", options_.deadline_seconds);
        const std::string why =
            std::string("no answer within the ") + seconds + " s deadline at " + x->where();
        for (int r : late) lose(r, why, true);
        continue;  // lose() started the exchange again
      }
    }
    if (waited_for_) {  // co-located: no rank serves an exchange before the slowest one's work
      const std::vector<int> silent = waited_for_();
      if (!silent.empty())
        MOE_FAIL("deadline passed with no work from rank(s) ", world_.ranks_with_hosts(silent),
                 " at ", x->where(), " (co-located ranks serve every rank's exchange together)");
    }
    const std::string waiting = not_replied(*x);
    if (waiting.empty())
      transport_.wait(x->recvs, x->deadline, "receiving the results of " + x->where());
    MOE_FAIL("deadline passed with no answer while waiting for rank(s) ", waiting, " at ",
             x->where());
  }
}

std::string ExpertExchanges::not_replied(const InFlight& x) const {
  return world_.ranks_with_hosts(
      [&](int r) { return r >= options_.first_expert_rank && !x.replied[r]; });
}

void ExpertExchanges::wait(int lane, Lanes* lanes) {
  const InFlight& x = *lanes_.at(lane);
  set_activity("waiting for rank(s) " + not_replied(x) + " at " + x.where());
  if (lanes) {
    lanes->wait_until(lane, [this, lane] { return ready(lane); });
  } else {
    // progress() throws at an exchange's deadline, or starts it again without a lost rank.
    while (!poll_until(
        [&] {
          progress();
          return ready(lane);
        },
        Deadline::after(options_.deadline_seconds * 2))) {
    }
  }
}

double ExpertExchanges::complete(int lane, DispatchPolicy* policy) {
  InFlight& x = *lanes_.at(lane);
  MOE_CHECK(ready(lane), "lane ", lane, " finished an exchange that is not complete");
  const double waited = recorder_.event("wait " + x.label(), x.t_wait, lane);
  // With lanes, other lanes compute while this one waits: their runner counts the idle time.
  if (options_.lanes == 1) recorder_.report().wait_us += waited;
  const double t_combine = now_us();
  // The expert ranks had every block before they replied: the sends are done.
  transport_.wait(x.sends, x.deadline, "sending " + x.where());
  if (policy) policy->observe(x.stats.feedback);
  for (int r = options_.first_expert_rank; r < world_.size(); ++r)
    recorder_.report().bytes_received += uint64_t(x.recv[r].size()) * sizeof(float);
  x.active = false;
  return t_combine;
}

void ExpertExchanges::finished(int lane, double t_combine) {
  const InFlight& x = *lanes_.at(lane);
  recorder_.event("combine " + x.label(), t_combine, lane);
  set_activity("running attention and the router (step " + std::to_string(x.step) + ")");
}

const ExchangeStats& ExpertExchanges::finish(int lane, float* rows_out, DispatchPolicy* policy) {
  const double t_combine = complete(lane, policy);
  const InFlight& x = *lanes_.at(lane);
  const int d = options_.d_model;
  for (size_t i = 0; i < x.rank_of_row.size(); ++i)
    std::memcpy(rows_out + i * d, x.recv[x.rank_of_row[i]].data() + size_t(x.slot_of_row[i]) * d,
                sizeof(float) * d);
  finished(lane, t_combine);
  return x.stats;
}

void ExpertExchanges::finish_lm_head(int lane, std::vector<float>& best_logit,
                                     std::vector<int>& best_id) {
  const double t_combine = complete(lane, nullptr);
  const InFlight& x = *lanes_.at(lane);
  const int first = options_.first_expert_rank;
  const int rows = x.stats.rows_per_rank.at(first);
  best_logit.assign(rows, 0.0f);
  best_id.assign(rows, 0);
  // Each rank's part of the vocabulary follows the previous rank's: a later rank wins a row only
  // with a strictly larger logit, so that equal ones go to the lowest id.
  for (int r = first; r < world_.size(); ++r)
    for (int row = 0; row < rows; ++row) {
      const BestLogit best = best_logit_at(x.recv[r].data(), size_t(row));
      if (r > first && !(best.logit > best_logit[row])) continue;
      best_logit[row] = best.logit;
      best_id[row] = best.id;
    }
  finished(lane, t_combine);
}

void ExpertExchanges::say_done() {
  for (int r = options_.first_expert_rank; r < world_.size(); ++r)
    if (!is_lost(r)) send_control(r, AttentionDone{});
}

bool ExpertExchanges::take_notice(const Envelope& e) {
  if (e.type != static_cast<uint32_t>(MessageType::kRankLost)) return false;
  const auto notice = decode_message<RankLost>(e);
  MOE_CHECK(notice.rank >= options_.first_expert_rank && notice.rank < world_.size(), "rank ",
            e.sender, " declared rank ", notice.rank, " lost, which is not an expert rank");
  MOE_CHECK(options_.continue_on_rank_failure, "rank ", e.sender, " declared rank ", notice.rank,
            " lost, but this run does not continue after a lost rank");
  lose(notice.rank, notice.reason + " (seen by rank " + std::to_string(e.sender) + ")", false);
  return true;
}

void ExpertExchanges::lose(int rank, const std::string& why, bool tell) {
  if (is_lost(rank)) return;
  lost_[rank] = 1;
  lost_order_.push_back(rank);
  world_.note_rank_lost();
  fence_if_local(world_, rank);
  if (tell) {  // this rank found it: it says so, and tells the others
    const bool stoppable = fenceable(world_, rank, [this](int r) { return !is_lost(r); });
    std::fprintf(stderr,
                 "moe: warning: rank %d (host %s) is lost: %s; %s and the run goes on without it "
                 "(--on-rank-failure continue)\n",
                 rank, world_.host_of(rank).c_str(), why.c_str(),
                 stoppable ? "it is stopped" : "no live rank shares its host to stop it,");
    std::fflush(stderr);
    for (int r = 0; r < world_.size(); ++r)
      if (r != world_.rank() && !is_lost(r)) send_control(r, RankLost{rank, why});
  }
  if (options_.expert_map) live(*options_.expert_map);  // fails at once if an expert is left out
  for (size_t lane = 0; lane < lanes_.size(); ++lane)
    if (lanes_[lane]->active && !lanes_[lane]->received) restart(int(lane));
}

bool ExpertExchanges::reported_resident(int rank, int layer, int e) const {
  const auto& layers = resident_.at(rank);
  if (layer >= int(layers.size()) || layers[layer].empty()) return true;
  return e < int(layers[layer].size()) && layers[layer][e] != 0;
}

const ExpertMap& ExpertExchanges::preferring_resident(const ExpertMap& map) {
  preferred_map_ = map;
  for (size_t l = 0; l < map.replicas.size(); ++l)
    for (size_t e = 0; e < map.replicas[l].size(); ++e) {
      std::vector<int> in;
      for (int r : map.replicas[l][e])
        if (reported_resident(r, int(l), int(e))) in.push_back(r);
      if (!in.empty()) preferred_map_.replicas[l][e] = std::move(in);
    }
  return preferred_map_;
}

void ExpertExchanges::adjust_for_residency(int moe_layer, const float* logits, const float* x,
                                           int d, int experts, GateResult& gate,
                                           const ExpertMap& map, std::vector<float>& demand) {
  demand.clear();
  if (!options_.expert_budgets) return;
  const ExpertMap& placed = live(map);
  const auto resident = [&](int e) {
    for (int r : placed.replicas.at(moe_layer).at(e))
      if (reported_resident(r, moe_layer, e)) return true;
    return false;
  };
  std::vector<double> asked;
  route_with_residency(options_.miss_policy, resident, logits, x, d, experts, gate,
                       budget_counters_, asked);
  demand.assign(asked.begin(), asked.end());
}

const ExpertMap& ExpertExchanges::live(const ExpertMap& map) {
  if (lost_order_.empty()) return map;
  if (live_of_ == &map && live_lost_ == lost_order_.size()) return live_map_;
  live_map_ = map;
  for (size_t l = 0; l < live_map_.replicas.size(); ++l)
    for (size_t e = 0; e < live_map_.replicas[l].size(); ++e) {
      auto& ranks = live_map_.replicas[l][e];
      std::erase_if(ranks, [&](int r) { return is_lost(r); });
      if (!ranks.empty()) continue;
      const std::vector<int>& held = map.replicas[l][e];
      MOE_FAIL("rank(s) ", world_.ranks_with_hosts(held), " lost, and expert ", e,
               " of sparse layer ", l, " has no other replica: the run cannot go on");
    }
  live_of_ = &map;
  live_lost_ = lost_order_.size();
  return live_map_;
}

void ExpertExchanges::restart(int lane) {
  std::unique_ptr<InFlight> old = std::move(lanes_[lane]);
  lanes_[lane] = std::make_unique<InFlight>();
  lanes_[lane]->send.resize(world_.size());
  lanes_[lane]->recv.resize(world_.size());
  const auto lost = [this](int peer) { return is_lost(peer); };
  transport_.abandon(old->recvs, lost);
  transport_.abandon(old->sends, lost);
  const int d = options_.d_model;
  if (old->layer >= 0) {
    // The rows in their first order again, from the blocks they were cut into.
    std::vector<float> rows(old->rank_of_row.size() * size_t(d));
    for (size_t i = 0; i < old->rank_of_row.size(); ++i)
      std::memcpy(rows.data() + i * d,
                  old->send[old->rank_of_row[i]].data() + size_t(old->slot_of_row[i]) * d,
                  sizeof(float) * d);
    start_sparse(lane, old->step, old->layer, *old->gate, *old->dispatch, rows.data(), *old->map,
                 *old->policy, old->demand);
  } else if (old->lm_head) {
    start_lm_head(lane, old->step, int(old->send[options_.first_expert_rank].size() / d),
                  old->send[options_.first_expert_rank].data());
  } else {
    const int rank = old->rank_of_row.empty() ? options_.first_expert_rank : old->rank_of_row[0];
    start_dense(lane, old->step, old->dense_layer, rank, int(old->rank_of_row.size()),
                old->send[rank].data());
  }
  retired_.push_back(std::move(old));
}

void RemoteExpertExecutor::run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
                               const ExpertDispatch& dispatch, const float* rows_in,
                               float* rows_out) {
  exchanges_.start_sparse(lane_, step, layer.moe_layer, gate, dispatch, rows_in, map_, policy_,
                          demand_);
  exchanges_.wait(lane_, lanes_);
  last_ = &exchanges_.finish(lane_, rows_out, &policy_);
}

void RemoteExpertExecutor::start_lm_head(int64_t step, int rows, const float* states) {
  exchanges_.start_lm_head(lane_, step, rows, states);
}

void RemoteExpertExecutor::finish_lm_head(std::vector<float>& best_logit,
                                          std::vector<int>& best_id) {
  exchanges_.wait(lane_, lanes_);
  exchanges_.finish_lm_head(lane_, best_logit, best_id);
}

void RemoteExpertExecutor::run_dense(const BlockWeights& block, int64_t step, int rows,
                                     const float* x, float* y) {
  exchanges_.start_dense(lane_, step, block.dense_layer, dense_rank_(block.dense_layer), rows, x);
  exchanges_.wait(lane_, lanes_);
  last_ = &exchanges_.finish(lane_, y, nullptr);
}

}  // namespace moe
