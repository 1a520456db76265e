#include "router/sim/event_model.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <queue>

#include "router/expert_dispatch.hpp"
#include "router/sim/bench_schedule.hpp"
#include "runtime/error.hpp"

namespace moe::sim {
namespace {

enum class EventKind {
  kCallStart,    // a coordinator dispatches its next call
  kHeadArrives,  // a message's header reached its receiver
  kPickup,       // an expert rank notices its next header and takes the block
  kBlockIn,      // an expert rank has its block: compute may start
  kComputeDone,  // (versioned: processor sharing reschedules)
  kQuotaEdge,    // a CPU-quota rank computing: a scheduler tick or a period's refill (versioned)
  kNoticeReply,  // the coordinator's receive returns a reply
  kResultIn,     // pull: a rank's rows are in at the coordinator
  kRelease,      // an expert rank's blocking send returned: it waits for work again
  kCallEnd,
};

struct Event {
  double time;
  uint64_t seq;  // ties run in the order they were scheduled: deterministic
  EventKind kind;
  int a;       // coordinator, message, rank or call
  uint64_t b;  // version, rank
  bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
};

enum class MessageKind { kWork, kReply };

struct Message {
  MessageKind kind;
  int from, to, call;
  double bytes;     // push replies carry their rows; work blocks are taken at pickup
  double avail_us;  // when a receive could return it (push replies: once their rows are in)
};

struct Call {
  int coordinator = 0;
  int setting = 0;
  CallResult result;
  std::vector<double> work_us;  // per rank: compute at full speed
  struct Part {
    int expert, rows;
    double work_us;
  };
  std::vector<std::vector<Part>> parts;  // per rank: its experts (kept where a node has contention)
  int replies_pending = 0, results_pending = 0;
  std::vector<RankFeedback> feedback;
};

struct ExpertState {
  std::deque<int> inbox;  // work headers arrived, not yet taken
  bool idle = true;       // waiting in its receive loop since wait_since_us
  bool pickup_scheduled = false;
  double wait_since_us = -1e12;  // long idle at the start
  int serving = -1;              // message in hand
  double start_us = 0, remaining_us = 0, rate = 1, last_update_us = 0, reply_posted_us = 0;
  double picked_up_us = 0;  // when it took the header in hand (its receive returned)
  bool computing = false;
  // Under a CPU quota (CpuQuota): CPU µs left in the current period (negative: an overrun to pay
  // back); the last period whose refill it has had; stalled until a refill; the core share it
  // consumes at.
  double budget_us = 0, share = 1;
  int64_t refilled_period = INT64_MIN / 2;
  bool throttled = false;
  uint64_t quota_version = 0;
  uint64_t version = 0;
};

struct CoordinatorState {
  int call = -1;
  bool waiting = false;  // in its reply loop since wait_since_us
  bool notice_scheduled = false;
  double wait_since_us = 0;
  std::deque<int> inbox;  // replies arrived, not yet received
};

class Simulation {
 public:
  // Several settings are interleaved in bench-routing's order; one runs alone.
  Simulation(const ClusterConfig& c, const std::vector<Setting>& settings,
             const std::vector<RoutingRecord>& trace, const SimOptions& o, uint32_t order_seed)
      : c_(c), settings_(settings), trace_(trace), o_(o), interleaved_(settings.size() > 1) {
    const int N = c.world_size();
    for (auto* port : {&out_free_, &in_free_}) port->assign(N, {0.0, 0.0});
    experts_.resize(N);
    coordinators_.resize(c.coordinators);
    computing_on_node_.resize(c.nodes.size());
    results_.resize(settings.size());
    for (auto& r : results_) r.busy_us.assign(N, 0.0);
    std::vector<std::vector<size_t>> records(c.coordinators);
    for (size_t i = 0; i < trace.size(); ++i)
      records[size_t(trace[i].batch % c.coordinators)].push_back(i);
    plan_.resize(c.coordinators);
    for (int coord = 0; coord < c.coordinators; ++coord) {
      const auto& mine = records[coord];
      BenchSchedule schedule(settings.size(), mine.size(), order_seed + uint32_t(coord));
      for (int pass = 0; pass < o.warmup_passes + o.passes; ++pass) {
        schedule.start_pass();
        for (size_t i = 0; i < mine.size(); ++i)
          for (const BenchSlot& slot : schedule.slot(i))
            plan_[coord].push_back({mine[slot.call], int(slot.setting), pass});
      }
    }
    next_.assign(c.coordinators, 0);
    bytes_per_row_ = double(o.d_model) * sizeof(float);
    for (const auto& node : c.nodes) any_contention_ = any_contention_ || !node.contention.none();
  }

  std::vector<SimResult> run() {
    for (int coord = 0; coord < c_.coordinators; ++coord)
      schedule(0.0, EventKind::kCallStart, coord);
    while (!events_.empty()) {
      const Event e = events_.top();
      events_.pop();
      now_ = e.time;
      switch (e.kind) {
        case EventKind::kCallStart:
          start_call(e.a);
          break;
        case EventKind::kHeadArrives:
          head_arrives(e.a);
          break;
        case EventKind::kPickup:
          pickup(e.a);
          break;
        case EventKind::kBlockIn:
          block_in(e.a);
          break;
        case EventKind::kComputeDone:
          compute_done(e.a, e.b);
          break;
        case EventKind::kQuotaEdge:
          quota_edge(e.a, e.b);
          break;
        case EventKind::kNoticeReply:
          notice_reply(e.a);
          break;
        case EventKind::kResultIn:
          result_in(e.a, int(e.b));
          break;
        case EventKind::kRelease:
          release(e.a);
          break;
        case EventKind::kCallEnd:
          end_call(e.a);
          break;
      }
    }
    for (SimResult& result : results_) {
      if (result.calls.empty()) continue;
      if (interleaved_) {
        for (const CallResult& call : result.calls) result.span_us += call.latency_us();
      } else {
        double first = result.calls[0].start_us, last = result.calls[0].end_us;
        for (const CallResult& call : result.calls)
          first = std::min(first, call.start_us), last = std::max(last, call.end_us);
        result.span_us = last - first;
      }
    }
    return std::move(results_);
  }

 private:
  void schedule(double time, EventKind kind, int a, uint64_t b = 0) {
    events_.push({time, seq_++, kind, a, b});
  }
  int kind_of(int a, int b) const { return c_.same_node(a, b) ? 0 : 1; }
  double notice(double since, double at) const {
    return c_.has_poll ? c_.poll.notice(since, at) : std::max(since, at);
  }
  double copy_us(double bytes) const {
    return c_.copy_bytes_per_us > 0 ? bytes / c_.copy_bytes_per_us : 0.0;
  }

  // A header (plus, for push replies, the rows): the sender's port, then the link's latency.
  void post(MessageKind kind, int from, int to, int call, double bytes) {
    const int id = int(messages_.size());
    messages_.push_back({kind, from, to, call, bytes, 0});
    const LinkSpec link = c_.link(from, to);
    double& port = out_free_[from][kind_of(from, to)];
    port = std::max(now_, port) + c_.message_overhead_us + bytes / link.bytes_per_us;
    schedule(port + link.latency_us, EventKind::kHeadArrives, id);
  }

  // A block taken by its receiver from now on: both ports, whichever frees later. Returns the end.
  double take(int from, int to, double bytes) {
    if (bytes <= 0) return now_;
    const int k = kind_of(from, to);
    const double end = std::max({now_, out_free_[from][k], in_free_[to][k]}) +
                       bytes / c_.link(from, to).bytes_per_us;
    out_free_[from][k] = in_free_[to][k] = end;
    return end;
  }

  void start_call(int coord) {
    if (next_[coord] >= plan_[coord].size()) return;
    const PlannedCall planned = plan_[coord][next_[coord]++];
    const RoutingRecord& rec = trace_[planned.record];
    const ExpertMap& map = *settings_[planned.setting].map;
    DispatchPolicy& policy = *settings_[planned.setting].policies[coord];

    const int id = int(calls_.size());
    calls_.emplace_back();
    Call& call = calls_.back();
    call.coordinator = coord;
    call.setting = planned.setting;
    CallResult& r = call.result;
    r.coordinator = coord;
    r.pass = planned.pass;
    r.batch = rec.batch;
    r.step = rec.step;
    r.layer = rec.layer;
    r.start_us = now_;
    coordinators_[coord].call = id;

    gate_ = GateResult{rec.expert, rec.probability, rec.kept, rec.entropy};
    plan_expert_dispatch(gate_, map.num_experts(), dispatch_);
    const auto t0 = std::chrono::steady_clock::now();
    policy.assign(rec.layer, dispatch_, gate_, map, rank_of_row_);
    r.policy_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    MOE_CHECK(int(rank_of_row_.size()) == dispatch_.rows(), "policy ", policy.name(), " assigned ",
              rank_of_row_.size(), " rows of ", dispatch_.rows());

    const int N = c_.world_size();
    r.rows = dispatch_.rows();
    r.rows_per_rank.assign(N, 0);
    r.latency_us_per_rank.assign(N, 0.0);
    r.compute_us_per_rank.assign(N, 0.0);
    r.queue_us_per_rank.assign(N, 0.0);
    call.work_us.assign(N, 0.0);
    if (any_contention_) call.parts.assign(N, {});
    for (int e = 0; e < map.num_experts(); ++e) {
      rows_on_.clear();  // rank → rows of expert e
      for (int i = dispatch_.offsets[e]; i < dispatch_.offsets[e + 1]; ++i) {
        const int rank = rank_of_row_[i];
        MOE_CHECK(rank >= c_.first_expert_rank() && rank < N && map.holds(rank, rec.layer, e),
                  "policy ", policy.name(), " sent expert ", e, " of layer ", rec.layer,
                  " to rank ", rank, ", which does not hold it");
        ++rows_on_[rank];
      }
      for (const auto& [rank, rows] : rows_on_) {
        const double us = c_.class_of(rank).work_curve().at(rows);
        r.rows_per_rank[rank] += rows;
        call.work_us[rank] += us;
        if (any_contention_) call.parts[rank].push_back({e, rows, us});
      }
    }
    if (o_.charge_policy_time) now_ += r.policy_us;
    now_ += copy_us(r.rows * bytes_per_row_);  // permute into per-rank blocks
    call.replies_pending = c_.experts;
    for (int rank = c_.first_expert_rank(); rank < N; ++rank)
      post(MessageKind::kWork, coord, rank, id, 0);
    // The blocks' sends are posted, not waited for (RemoteExpertExecutor completes them in
    // combine, when the replies have proven delivery): the coordinator polls for replies at once.
    CoordinatorState& k = coordinators_[coord];
    k.waiting = true;
    k.wait_since_us = now_;
  }

  void head_arrives(int id) {
    Message& m = messages_[id];
    m.avail_us = now_;
    if (m.kind == MessageKind::kWork) {
      ExpertState& x = experts_[m.to];
      x.inbox.push_back(id);
      if (x.idle && !x.pickup_scheduled) {
        x.pickup_scheduled = true;
        schedule(notice(x.wait_since_us, now_), EventKind::kPickup, m.to);
      }
      return;
    }
    // A reply: push replies carry rows through the coordinator's port (cut-through).
    if (m.bytes > 0) {
      double& port = in_free_[m.to][kind_of(m.from, m.to)];
      port = std::max(now_, port + m.bytes / c_.link(m.from, m.to).bytes_per_us);
      const double at = port;
      m.avail_us = at;
    }
    CoordinatorState& k = coordinators_[m.to];
    k.inbox.push_back(id);
    if (k.waiting) schedule_next_notice(m.to);
  }

  void pickup(int rank) {
    ExpertState& x = experts_[rank];
    x.pickup_scheduled = false;
    if (x.inbox.empty() || !x.idle) return;
    x.idle = false;
    x.picked_up_us = now_;
    x.serving = x.inbox.front();
    x.inbox.pop_front();
    const Message& m = messages_[x.serving];
    Call& call = calls_[m.call];
    const double bytes = call.result.rows_per_rank[rank] * bytes_per_row_;
    // A small block is in hand no sooner than the rank's profiled receive time; with no rows the
    // rank posts no receive and starts at once.
    const double in_hand = bytes > 0 ? now_ + c_.class_of(rank).receive_us : now_;
    schedule(std::max(take(m.from, rank, bytes), in_hand), EventKind::kBlockIn, rank);
  }

  void block_in(int rank) {
    ExpertState& x = experts_[rank];
    x.start_us = now_;
    x.remaining_us = calls_[messages_[x.serving].call].work_us[rank];
    x.computing = true;
    x.last_update_us = now_;
    const int node = c_.ranks[rank].node;
    advance_node(node);
    const CpuQuota& quota = c_.class_of(rank).quota;
    if (quota.on()) {
      // The refills of the periods that began while it waited (an edge in this very instant
      // included), less the CPU its polling and MPI took since its last block; with no quota
      // left it stalls at once.
      refill(x, quota);
      x.budget_us -= quota.call_cpu_us;
      x.throttled = x.budget_us <= 0;
      schedule_quota_edge(rank);
    }
    computing_on_node_[node].push_back(rank);
    reschedule_node(node, rank);
  }

  // Processor sharing: bring every computing rank of the node up to now at its old rate (and a
  // quota'd rank's budget down by the CPU it used).
  void advance_node(int node) {
    for (int r : computing_on_node_[node]) {
      ExpertState& x = experts_[r];
      const double dt = now_ - x.last_update_us;
      x.remaining_us = std::max(0.0, x.remaining_us - dt * x.rate);
      const CpuQuota& quota = c_.class_of(r).quota;
      if (quota.on() && !x.throttled) x.budget_us -= dt * x.share * quota.threads;
      x.last_update_us = now_;
    }
  }

  void reschedule_node(int node, int changed) {
    const int cores = c_.nodes[node].cores;
    const ContentionCurve& contention = c_.nodes[node].contention;
    const bool contends = !contention.none();
    const auto& on = computing_on_node_[node];
    const int busy =
        int(std::count_if(on.begin(), on.end(), [&](int r) { return !experts_[r].throttled; }));
    const double rate = cores > 0 ? std::min(1.0, double(cores) / std::max(busy, 1)) : 1.0;
    // Of the other computing ranks, those that run alongside this one (all, up to the cores).
    const double alongside = cores > 0 && busy > cores ? double(cores - 1) / (busy - 1) : 1.0;
    for (int r : on) {
      ExpertState& x = experts_[r];
      if (x.throttled) {  // stalled: no progress until a refill (quota_edge)
        x.rate = x.share = 0;
        ++x.version;
        continue;
      }
      // Dedicated devices without contention: nobody else's rate changes.
      if (cores == 0 && !contends && r != changed) continue;
      // Slowdowns add up; a speedup (another rank warming the cache with the same expert) counts
      // once, the largest: one warm cache is all there is to gain.
      double slowdown = 0, speedup = 0;
      if (contends)
        for (int o : on)
          if (o != r && !experts_[o].throttled) {
            const double f = c_.classes[c_.ranks[o].device_class].memory_share *
                             pair_contention(r, o, contention);
            if (f >= 0)
              slowdown += f;
            else
              speedup = std::min(speedup, f);
          }
      x.share = rate;
      x.rate = rate / (1 + (slowdown + speedup) * alongside);
      schedule(now_ + x.remaining_us / x.rate, EventKind::kComputeDone, r, ++x.version);
    }
  }

  // The next scheduler tick or period edge of a computing quota'd rank (ticks and periods start
  // at time 0: the phase is unknown, and any fixed one gives the same long-run share).
  void schedule_quota_edge(int rank) {
    const CpuQuota& q = c_.class_of(rank).quota;
    auto next = [&](double step) { return (std::floor(now_ / step + 1e-9) + 1) * step; };
    schedule(std::min(next(q.period_us), next(c_.cfs_tick_us)), EventKind::kQuotaEdge, rank,
             ++experts_[rank].quota_version);
  }

  // Adds the refills of the periods begun since the last one it had (an overrun is paid back
  // first; nothing beyond one period's quota is kept). Each period refills once, whether its
  // edge found the rank computing (quota_edge) or idle (block_in, later).
  void refill(ExpertState& x, const CpuQuota& q) const {
    const auto period = int64_t(std::floor(now_ / q.period_us + 1e-9));
    if (period <= x.refilled_period) return;
    x.budget_us = std::min(x.budget_us + double(period - x.refilled_period) * q.per_period_us(),
                           q.per_period_us());
    x.refilled_period = period;
  }

  void quota_edge(int rank, uint64_t version) {
    ExpertState& x = experts_[rank];
    if (!x.computing || version != x.quota_version) return;
    const CpuQuota& q = c_.class_of(rank).quota;
    const int node = c_.ranks[rank].node;
    advance_node(node);
    auto on_edge = [&](double step) {
      return std::abs(now_ / step - std::round(now_ / step)) < 1e-9;
    };
    const bool was_throttled = x.throttled;
    if (on_edge(q.period_us)) {  // the refill; an overrun is paid back first
      refill(x, q);
      if (x.throttled && x.budget_us > 0) x.throttled = false;
    }
    if (on_edge(c_.cfs_tick_us) && !x.throttled && x.budget_us <= 0) x.throttled = true;
    if (x.throttled != was_throttled) reschedule_node(node, rank);
    schedule_quota_edge(rank);
  }

  // How much rank o computing slows rank r's block: the work-weighted mean over r's expert groups
  // of the node's contention at the group's rows, "same" where o's block has that (layer, expert).
  double pair_contention(int r, int o, const ContentionCurve& curve) const {
    const Call& cr = calls_[messages_[experts_[r].serving].call];
    const Call& co = calls_[messages_[experts_[o].serving].call];
    const auto& theirs = co.parts[o];
    double weighted = 0, total = 0;
    for (const auto& p : cr.parts[r]) {
      const bool same = cr.result.layer == co.result.layer &&
                        std::any_of(theirs.begin(), theirs.end(),
                                    [&](const Call::Part& q) { return q.expert == p.expert; });
      weighted += p.work_us * curve.at(p.rows, same);
      total += p.work_us;
    }
    return total > 0 ? weighted / total : 0;
  }

  void compute_done(int rank, uint64_t version) {
    ExpertState& x = experts_[rank];
    if (!x.computing || version != x.version) return;  // rescheduled since
    const int node = c_.ranks[rank].node;
    advance_node(node);
    auto& on = computing_on_node_[node];
    on.erase(std::find(on.begin(), on.end(), rank));
    x.computing = false;
    x.throttled = false;  // a rank that finished was running; its budget stands as of now
    reschedule_node(node, -1);

    const Message work = messages_[x.serving];  // a copy: post() below may grow messages_
    Call& call = calls_[work.call];
    RankFeedback f;
    f.rank = rank;
    f.layer = call.result.layer;
    f.tokens = call.result.rows_per_rank[rank];
    f.compute_us = now_ - x.start_us;
    call.result.compute_us_per_rank[rank] = f.compute_us;
    // As ranks/expert_rank.cpp measures it: from its receive of the header returning (after its
    // poll noticed it, and after any earlier block) to the block being in.
    f.queue_us = x.start_us - x.picked_up_us;
    call.result.queue_us_per_rank[rank] = f.queue_us;
    if (call.result.pass >= o_.warmup_passes) results_[call.setting].busy_us[rank] += f.compute_us;
    feedback_of_reply_[int(messages_.size())] = f;
    post(MessageKind::kReply, rank, work.from, work.call,
         c_.combine_push ? f.tokens * bytes_per_row_ : 0.0);
    x.reply_posted_us = now_;
    // Pull: the rank's blocking send holds it until the coordinator takes the rows.
    if (c_.combine_push || f.tokens == 0) schedule(now_, EventKind::kRelease, rank);
  }

  // The coordinator's next receive returns the earliest available reply, as it polls.
  void schedule_next_notice(int coord) {
    CoordinatorState& k = coordinators_[coord];
    if (k.inbox.empty() || k.notice_scheduled) return;
    auto first = std::min_element(k.inbox.begin(), k.inbox.end(), [&](int a, int b) {
      return messages_[a].avail_us < messages_[b].avail_us;
    });
    std::iter_swap(first, k.inbox.begin());
    k.notice_scheduled = true;
    schedule(notice(k.wait_since_us, messages_[k.inbox.front()].avail_us), EventKind::kNoticeReply,
             coord);
  }

  void notice_reply(int coord) {
    CoordinatorState& k = coordinators_[coord];
    k.notice_scheduled = false;
    if (k.inbox.empty()) return;
    const int id = k.inbox.front();
    k.inbox.pop_front();
    Call& call = calls_[messages_[id].call];
    RankFeedback f = feedback_of_reply_.at(id);
    feedback_of_reply_.erase(id);
    f.latency_us = now_ - call.result.start_us;
    call.result.latency_us_per_rank[f.rank] = f.latency_us;
    call.feedback.push_back(f);
    k.wait_since_us = now_;  // the next receive starts polling afresh
    schedule_next_notice(coord);
    if (--call.replies_pending > 0) return;
    k.waiting = false;
    settings_[call.setting].policies[coord]->observe(call.feedback);
    const int id_call = k.call;
    if (c_.combine_push)
      return schedule(now_ + copy_us(call.result.rows * bytes_per_row_), EventKind::kCallEnd,
                      id_call);
    // Pull: the coordinator takes every block that has rows, in rank order.
    for (int rank = c_.first_expert_rank(); rank < c_.world_size(); ++rank)
      if (call.result.rows_per_rank[rank] > 0) {
        ++call.results_pending;
        schedule(take(rank, coord, call.result.rows_per_rank[rank] * bytes_per_row_),
                 EventKind::kResultIn, id_call, uint64_t(rank));
      }
    if (call.results_pending == 0) schedule(now_, EventKind::kCallEnd, id_call);
  }

  void result_in(int id, int rank) {
    // The rank's send completes now; it notices as its own polling allows.
    schedule(notice(experts_[rank].reply_posted_us, now_), EventKind::kRelease, rank);
    Call& call = calls_[id];
    if (--call.results_pending == 0)
      schedule(now_ + copy_us(call.result.rows * bytes_per_row_), EventKind::kCallEnd, id);
  }

  void release(int rank) {
    ExpertState& x = experts_[rank];
    x.serving = -1;
    x.idle = true;
    x.wait_since_us = now_;
    if (!x.inbox.empty() && !x.pickup_scheduled) {
      x.pickup_scheduled = true;
      schedule(now_, EventKind::kPickup, rank);
    }
  }

  void end_call(int id) {
    Call& call = calls_[id];
    call.result.end_us = now_;
    if (call.result.pass >= o_.warmup_passes) results_[call.setting].calls.push_back(call.result);
    call.work_us = {};
    call.parts = {};
    call.feedback = {};
    schedule(now_ + c_.coordinator_gap_us, EventKind::kCallStart, call.coordinator);
  }

  struct PlannedCall {
    size_t record;
    int setting, pass;
  };

  const ClusterConfig& c_;
  const std::vector<Setting>& settings_;
  const std::vector<RoutingRecord>& trace_;
  const SimOptions& o_;
  const bool interleaved_;
  double bytes_per_row_ = 0;
  bool any_contention_ = false;  // some node's ranks slow each other: keep each block's experts

  double now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<Message> messages_;
  std::map<int, RankFeedback> feedback_of_reply_;  // reply message → the rank's feedback
  std::vector<Call> calls_;
  std::vector<ExpertState> experts_;
  std::vector<CoordinatorState> coordinators_;
  std::vector<std::array<double, 2>> out_free_, in_free_;  // [rank][intra, inter]
  std::vector<std::vector<int>> computing_on_node_;
  std::vector<std::vector<PlannedCall>> plan_;  // per coordinator: its calls, in order
  std::vector<size_t> next_;                    // per coordinator: calls started
  GateResult gate_;
  ExpertDispatch dispatch_;
  std::vector<int> rank_of_row_;
  std::map<int, int> rows_on_;
  std::vector<SimResult> results_;  // per setting
};

}  // namespace

std::vector<std::unique_ptr<DispatchPolicy>> coordinator_policies(const std::string& name,
                                                                  const PolicyContext& context,
                                                                  int coordinators) {
  std::vector<std::unique_ptr<DispatchPolicy>> policies;
  for (int c = 0; c < coordinators; ++c) {
    PolicyContext mine = context;
    mine.seed = context.seed + uint64_t(c);
    policies.push_back(make_dispatch_policy(name, mine));
  }
  return policies;
}

namespace {

void check_setting(const ClusterConfig& cluster, const Setting& setting,
                   const std::vector<RoutingRecord>& trace) {
  MOE_CHECK(setting.map != nullptr && int(setting.policies.size()) == cluster.coordinators,
            "simulate: ", setting.policies.size(), " policies for ", cluster.coordinators,
            " coordinators");
  const ExpertMap& map = *setting.map;
  MOE_CHECK(map.num_layers() > 0, "simulate: empty expert map");
  for (const auto& r : trace) {
    MOE_CHECK(r.layer >= 0 && r.layer < map.num_layers(), "routing trace names sparse layer ",
              r.layer, " but the expert map has ", map.num_layers());
    for (size_t t = 0; t < r.expert.size(); ++t)
      MOE_CHECK(r.expert[t] >= 0 && r.expert[t] < map.num_experts(), "routing trace names expert ",
                r.expert[t], " but the expert map has ", map.num_experts());
  }
  for (int l = 0; l < map.num_layers(); ++l)
    for (int e = 0; e < map.num_experts(); ++e)
      for (int rank : map.ranks_of(l, e))
        MOE_CHECK(rank >= cluster.first_expert_rank() && rank < cluster.world_size(),
                  "expert map: layer ", l, " expert ", e, " is on rank ", rank,
                  " but the cluster's expert ranks are ", cluster.first_expert_rank(), "..",
                  cluster.world_size() - 1);
}

}  // namespace

SimResult simulate(const ClusterConfig& cluster, const ExpertMap& map,
                   const std::vector<DispatchPolicy*>& policies,
                   const std::vector<RoutingRecord>& trace, const SimOptions& options) {
  return std::move(simulate_interleaved(cluster, {Setting{&map, policies}}, trace, options).at(0));
}

std::vector<SimResult> simulate_interleaved(const ClusterConfig& cluster,
                                            const std::vector<Setting>& settings,
                                            const std::vector<RoutingRecord>& trace,
                                            const SimOptions& options, uint32_t order_seed) {
  MOE_CHECK(options.d_model > 0 && options.passes >= 1 && options.warmup_passes >= 0,
            "simulate: bad options");
  MOE_CHECK(!settings.empty(), "simulate: no setting");
  MOE_CHECK(settings.size() == 1 || cluster.coordinators == 1,
            "simulate: settings run interleaved on one coordinator (as bench-routing measures "
            "them), the cluster has ",
            cluster.coordinators);
  for (const auto& setting : settings) check_setting(cluster, setting, trace);
  return Simulation(cluster, settings, trace, options, order_seed).run();
}

}  // namespace moe::sim
