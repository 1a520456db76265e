#include "router/sim/serving_model.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <vector>

#include "runtime/error.hpp"

namespace moe::sim {

namespace {

// Ranks that compute (one job at a time each, first come first served) at a rate set by how
// many compute at once, and timers for the messages in between.
class Engine {
 public:
  Engine(int ranks, const ServingHost& host) : ranks_(ranks), host_(host) {}

  double now() const { return now_; }
  double busy_us(int rank) const { return ranks_[rank].busy_us; }

  // `contention`: this job's slowdown per other rank computing beside it.
  void submit(int rank, double work_us, double contention, std::function<void()> done) {
    ranks_[rank].queue.push_back({std::max(work_us, 0.0), contention, std::move(done)});
  }
  void after(double delay_us, std::function<void()> fn) {
    timers_.push({now_ + std::max(delay_us, 0.0), next_timer_++, std::move(fn)});
  }

  void run() {
    constexpr double kEps = 1e-9;
    for (;;) {
      int computing = 0;
      for (auto& r : ranks_) {
        if (!r.running && !r.queue.empty()) {
          r.job = std::move(r.queue.front());
          r.queue.pop_front();
          r.running = true;
        }
        computing += r.running;
      }
      if (computing == 0 && timers_.empty()) return;
      double step = std::numeric_limits<double>::infinity();
      for (auto& r : ranks_)
        if (r.running) {
          r.rate = rate_of(computing, r.job.contention);
          step = std::min(step, r.job.remaining_us / r.rate);
        }
      if (!timers_.empty()) step = std::min(step, timers_.top().at - now_);
      now_ += step;
      std::vector<std::function<void()>> fired;
      for (auto& r : ranks_) {
        if (!r.running) continue;
        r.job.remaining_us -= step * r.rate;
        r.busy_us += step;
        if (r.job.remaining_us <= kEps) {
          r.running = false;
          fired.push_back(std::move(r.job.done));
        }
      }
      while (!timers_.empty() && timers_.top().at <= now_ + kEps) {
        fired.push_back(timers_.top().fn);
        timers_.pop();
      }
      for (auto& fn : fired) fn();
    }
  }

 private:
  // A job of one of `computing` ranks progresses at this many µs of work per µs: the cores shared
  // out, and each rank that computes beside it slowing it by its contention.
  double rate_of(int computing, double contention) const {
    const double running =
        host_.cores > 0 ? std::min(double(computing), host_.cores) : double(computing);
    return (running / computing) / (1 + contention * std::max(running - 1, 0.0));
  }

  struct Job {
    double remaining_us = 0;
    double contention = 0;
    std::function<void()> done;
  };
  struct Rank {
    std::deque<Job> queue;
    Job job;
    bool running = false;
    double rate = 1;
    double busy_us = 0;
  };
  struct Timer {
    double at;
    uint64_t order;
    std::function<void()> fn;
    bool operator<(const Timer& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  std::vector<Rank> ranks_;
  std::priority_queue<Timer> timers_;
  ServingHost host_;
  double now_ = 0;
  uint64_t next_timer_ = 0;
};

struct Link {
  double latency_us = 0, bytes_per_us = 1e9, receive_us = 0;
};

// The mean over the profile's expert ranks.
Link mean_link(const Profile& p) {
  MOE_CHECK(!p.ranks.empty(), "the profile has no expert rank, so no link to model");
  Link l{0, 0, 0};
  for (const auto& r : p.ranks) {
    l.latency_us += r.link_latency_us / p.ranks.size();
    l.bytes_per_us += r.link_bytes_per_us / p.ranks.size();
    l.receive_us += r.receive_us / p.ranks.size();
  }
  return l;
}

// One attention rank's micro-batch lane, following ranks/serving.cpp's Server::lane.
class Lane {
 public:
  struct Shared {
    Engine& engine;
    const ServingCurves& curves;
    const ServingLayout& layout;
    const ServingWorkload& workload;
    Link link;
    int d_model, num_experts;
    const ServingHost& host;
    bool decode_only;     // lanes start full and only decode (the steady-state step)
    int steps_to_decode;  // decode_only: steps per lane
    std::vector<std::vector<int>>& waiting;  // per attention rank: the input tokens of those not
                                             // yet admitted, in order
    std::vector<size_t>& taken;  // per attention rank: how many of those its lanes admitted
    const LatencyCurve& expert;  // one expert FFN over its rows (empty: no imbalance)
    std::map<std::pair<int, int>, double> imbalances = {};

    // The busiest of `ranks` expert ranks' sparse work against the mean, expected over rows
    // routed uniformly at random to the experts, expert e on rank e mod ranks (round-robin), each
    // expert's cost the curve at its rows: a few rows hit a few experts, unevenly. Monte Carlo
    // with a fixed seed, once per (rows, ranks).
    double imbalance(int rows, int ranks) {
      if (ranks <= 1 || num_experts < ranks || rows <= 0 || expert.tokens.empty()) return 1;
      const auto key = std::make_pair(rows, ranks);
      if (auto it = imbalances.find(key); it != imbalances.end()) return it->second;
      constexpr int kSamples = 256;
      std::mt19937 rng(7);
      std::uniform_int_distribution<int> pick(0, num_experts - 1);
      std::vector<int> per_expert(num_experts);
      std::vector<double> per_rank(ranks);
      double busiest = 0, mean = 0;
      for (int sample = 0; sample < kSamples; ++sample) {
        std::fill(per_expert.begin(), per_expert.end(), 0);
        std::fill(per_rank.begin(), per_rank.end(), 0.0);
        for (int r = 0; r < rows; ++r) ++per_expert[pick(rng)];
        double total = 0;
        for (int e = 0; e < num_experts; ++e) {
          const double us = expert.at(per_expert[e]);
          per_rank[e % ranks] += us;
          total += us;
        }
        busiest += *std::max_element(per_rank.begin(), per_rank.end());
        mean += total / ranks;
      }
      return imbalances[key] = mean > 0 ? busiest / mean : 1;
    }
  };

  Lane(Shared& s, int rank, int room) : s_(s), rank_(rank), room_(room) {
    per_step_ = s.layout.admit_per_step > 0 ? s.layout.admit_per_step : std::max(1, (room + 3) / 4);
  }

  void start() {
    if (room_ == 0) return;
    if (s_.decode_only) {
      active_.assign(room_, 0);
      decode();
    } else {
      admit(room_);
    }
  }
  const std::vector<double>& step_ends() const { return step_ends_; }

 private:
  // Up to `k` waiting requests join with one encoder pass over them, padded to the longest; then
  // a decode step, as the server.
  void admit(int k) {
    auto& waiting = s_.waiting[rank_];
    size_t& next = s_.taken[rank_];
    k = std::min(k, int(waiting.size() - next));
    if (k == 0) {
      if (!active_.empty()) decode();
      return;
    }
    int longest = 0;
    for (int i = 0; i < k; ++i) longest = std::max(longest, waiting[next++]);
    const double tokens = double(k) * longest;
    const ServingCurves& c = s_.curves;
    pass(colocated(
             {c.encode_attention.at(tokens), c.encode_experts.at(tokens), c.encode_dense.at(tokens),
              0, c.encode_exchanges, c.encode_dense_exchanges, 0, tokens},
             [&](double t) { return c.encode_experts.at(t) - c.encode_dense.at(t); }),
         [this, k] {
           active_.insert(active_.end(), k, 0);
           decode();
         });
  }

  void decode() {
    const double n = double(active_.size());
    const ServingCurves& c = s_.curves;
    pass(colocated({c.decode_attention.at(n), c.decode_experts.at(n), c.decode_dense.at(n),
                    c.decode_lm_head.at(n), c.decode_exchanges, c.decode_dense_exchanges,
                    c.decode_lm_head_exchanges, n},
                   [&](double t) {
                     return c.decode_experts.at(t) - c.decode_dense.at(t) - c.decode_lm_head.at(t);
                   }),
         [this] { decoded(); });
  }

  void decoded() {
    step_ends_.push_back(s_.engine.now());
    std::vector<int> going_on;
    for (int generated : active_)
      if (generated + 1 < s_.workload.new_tokens) going_on.push_back(generated + 1);
    active_ = std::move(going_on);
    if (s_.decode_only) {
      if (int(step_ends_.size()) < s_.steps_to_decode) decode();
      return;
    }
    if (s_.taken[rank_] < s_.waiting[rank_].size() && int(active_.size()) < room_) {
      admit(std::min(per_step_, room_ - int(active_.size())));
    } else if (!active_.empty()) {
      decode();
    }
  }

  // One pass's work, from the curves.
  struct Work {
    double attention_us, experts_us, dense_us, lm_head_us;
    double exchanges, dense_exchanges, lm_head_exchanges, rows;
  };

  // Co-located, the work of a pass as measured with expert ranks moves: the dense FFNs and the
  // expert ranks' share of the lm_head to the rank's own segments, and each sparse layer costs its
  // share of the call that serves every rank's rows together (`sparse_at`: the sparse layers' work
  // at a count of rows).
  Work colocated(Work w, const std::function<double(double)>& sparse_at) const {
    if (!s_.layout.colocated) return w;
    const double M = s_.layout.attention_ranks;
    w.attention_us += w.dense_us + w.lm_head_us;
    w.experts_us = std::max(sparse_at(w.rows * M), 0.0) / M;
    w.exchanges -= w.dense_exchanges + w.lm_head_exchanges;
    w.dense_us = w.lm_head_us = w.dense_exchanges = w.lm_head_exchanges = 0;
    return w;
  }

  // The attention work cut into exchanges + 1 equal segments, with an exchange of `rows` rows
  // after each but the last. The lm_head's exchanges come last and split evenly over the expert
  // ranks; the dense FFNs', spread evenly among the others, go whole to one expert rank each, in
  // turn; the sparse layers' share the rest, each rank as much as the busiest (the expected
  // imbalance of their rows over the experts).
  void pass(const Work& w, std::function<void()> done) {
    const int k = int(std::lround(w.exchanges));
    const int lm_head = std::min(k, int(std::lround(w.lm_head_exchanges)));
    const int dense = std::min(k - lm_head, int(std::lround(w.dense_exchanges)));
    const int sparse = k - lm_head - dense;
    pass_ = {w.attention_us / (k + 1),
             dense > 0 ? w.dense_us / dense : 0.0,
             lm_head > 0 ? w.lm_head_us / lm_head : 0.0,
             sparse > 0 ? std::max(w.experts_us - w.dense_us - w.lm_head_us, 0.0) / sparse : 0.0,
             k,
             dense,
             lm_head,
             0,
             w.rows,
             std::move(done)};
    if (k == 0) pass_.segment_us += w.experts_us;  // no exchange: nothing runs elsewhere
    segment();
  }

  void segment() {
    s_.engine.submit(rank_, pass_.segment_us, s_.host.contention.at(pass_.rows), [this] {
      if (pass_.done_segments == pass_.exchanges) {
        auto done = std::move(pass_.done);
        done();
      } else {
        exchange(pass_.done_segments++);
      }
    });
  }

  // Exchange i of the pass: the last `lm_head_exchanges` are the lm_head's; of the k' before,
  // `dense_exchanges` are dense FFNs' (those where i · dense / k' steps up).
  void exchange(int i) {
    const int N = s_.layout.colocated ? s_.layout.attention_ranks : s_.layout.expert_ranks;
    const int k = pass_.exchanges - pass_.lm_head_exchanges;
    const int dense = pass_.dense_exchanges;
    const bool is_lm_head = i >= k, is_dense = !is_lm_head && (i + 1) * dense / k > i * dense / k;
    double work = is_lm_head ? pass_.lm_head_us : is_dense ? pass_.dense_us : pass_.sparse_us;
    // A dense FFN's GEMM and the lm_head's take every row; a sparse layer's experts share them.
    const double rows_each = is_dense || is_lm_head ? pass_.rows : pass_.rows / s_.num_experts;
    const double contention = s_.host.contention.at(rows_each);
    if (N == 0) {  // one process: the experts run in line
      s_.engine.submit(rank_, work, contention, [this] { segment(); });
      return;
    }
    if (!is_dense && !is_lm_head) work *= s_.imbalance(int(std::lround(pass_.rows)), N);
    const int ranks = is_dense ? 1 : N;
    const int first = is_dense ? (i * dense / k) % N : 0;
    const Link& l = s_.link;
    // A sparse layer's rows split over the ranks; the lm_head's go to every rank, a dense FFN's
    // to its one.
    const double bytes = pass_.rows * s_.d_model * sizeof(float) / (is_dense || is_lm_head ? 1 : N);
    const double one_way = l.latency_us + bytes / l.bytes_per_us;
    s_.engine.after(one_way + l.receive_us, [this, ranks, first, work, contention, one_way] {
      pending_ = ranks;
      const int first_expert_rank = s_.layout.colocated ? 0 : s_.layout.attention_ranks;
      for (int e = first; e < first + ranks; ++e)
        s_.engine.submit(first_expert_rank + e, work / ranks, contention, [this, one_way] {
          if (--pending_ == 0) s_.engine.after(one_way, [this] { segment(); });
        });
    });
  }

  struct Pass {
    double segment_us = 0, dense_us = 0, lm_head_us = 0, sparse_us = 0;  // per segment, exchange
    int exchanges = 0, dense_exchanges = 0, lm_head_exchanges = 0, done_segments = 0;
    double rows = 0;
    std::function<void()> done;
  };
  Shared& s_;
  int rank_, room_, per_step_ = 1;
  std::vector<int> active_;  // per sequence: tokens generated
  Pass pass_;
  int pending_ = 0;
  std::vector<double> step_ends_;
};

struct Simulated {
  double seconds = 0, attention_busy = 0, experts_busy = 0;
  std::vector<double> lane0_step_ends;
};

Simulated simulate(const Profile& p, const ServingLayout& layout, const ServingWorkload& workload,
                   const ServingHost& host, bool decode_only) {
  const int M = layout.attention_ranks, m = layout.micro_batches;
  const int N = layout.colocated ? 0 : layout.expert_ranks;  // the ranks that only hold experts
  Engine engine(M + N, host);
  std::vector<std::vector<int>> waiting(M);
  for (size_t i = 0; i < workload.input_tokens.size(); ++i)
    waiting[i % M].push_back(workload.input_tokens[i]);
  std::vector<size_t> taken(M, 0);
  constexpr int kSteadySteps = 8;
  const LatencyCurve expert = p.ranks.empty() ? LatencyCurve{} : p.ranks.front().expert;
  const bool exchanges = N > 0 || layout.colocated;
  Lane::Shared shared{
      engine,    p.serving,     layout, workload,    exchanges ? mean_link(p) : Link{},
      p.d_model, p.num_experts, host,   decode_only, kSteadySteps,
      waiting,   taken,         expert};
  std::vector<std::unique_ptr<Lane>> lanes;
  for (int a = 0; a < M; ++a)
    for (int l = 0; l < m; ++l)
      lanes.push_back(std::make_unique<Lane>(
          shared, a, layout.batch_size / m + (l < layout.batch_size % m ? 1 : 0)));
  for (auto& lane : lanes) lane->start();
  engine.run();
  Simulated out;
  out.seconds = engine.now() / 1e6;
  for (int a = 0; a < M; ++a) out.attention_busy += engine.busy_us(a) / M;
  for (int e = 0; e < N; ++e) out.experts_busy += engine.busy_us(M + e) / N;
  if (layout.colocated) out.experts_busy = out.attention_busy;  // the same ranks
  out.lane0_step_ends = lanes.front()->step_ends();
  return out;
}

}  // namespace

ServingPrediction predict_serving(const Profile& p, const ServingLayout& layout,
                                  const ServingWorkload& workload, const ServingHost& host) {
  MOE_CHECK(!p.serving.empty(),
            "the profile has no serving curves: measure them with moe profile --serving-rows");
  MOE_CHECK(layout.attention_ranks >= 1 && layout.expert_ranks >= 0 && layout.micro_batches >= 1 &&
                layout.batch_size >= 1,
            "the serving model needs an attention rank, a lane and a batch");
  MOE_CHECK(p.d_model >= 1 && p.num_experts >= 1, "the serving model needs the model's shape");
  MOE_CHECK((host.cores == 0 || host.cores >= 1) && host.contention.value >= 0,
            "the serving model needs 0 (a core each) or at least 1 core, and a contention >= 0");
  MOE_CHECK((layout.colocated ? layout.attention_ranks : layout.expert_ranks) <=
                std::max(p.num_experts, 1),
            "the serving model splits the expert work evenly over the expert ranks: ",
            layout.colocated ? layout.attention_ranks : layout.expert_ranks, " expert ranks for ",
            p.num_experts, " experts per layer would hold replicas, which re-read the weights");
  MOE_CHECK(!workload.input_tokens.empty() && workload.new_tokens >= 1,
            "the serving model needs requests and new tokens");
  for (int n : workload.input_tokens)
    MOE_CHECK(n >= 1, "the serving model needs requests of at least one input token");
  ServingPrediction out;
  const Simulated run = simulate(p, layout, workload, host, false);
  out.seconds = run.seconds;
  out.tokens_per_s =
      double(workload.input_tokens.size()) * workload.new_tokens / std::max(run.seconds, 1e-12);
  out.attention_busy = run.attention_busy / std::max(run.seconds * 1e6, 1e-12);
  out.experts_busy = run.experts_busy / std::max(run.seconds * 1e6, 1e-12);
  // The steady step: lane 0's period once every lane is in step (its last half of the steps).
  ServingWorkload endless = workload;
  endless.new_tokens = std::numeric_limits<int>::max();
  const auto ends = simulate(p, layout, endless, host, true).lane0_step_ends;
  const size_t half = ends.size() / 2;
  out.decode_step_ms = (ends.back() - ends[half - 1]) / double(ends.size() - half) / 1e3;
  return out;
}

}  // namespace moe::sim
