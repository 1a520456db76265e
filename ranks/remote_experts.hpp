// The attention rank's side of the expert exchanges. For a sparse layer: choose a replica rank
// for every kept token (the dispatch policy), cut the expert-grouped rows into one block per
// expert rank, post the receives for the results, send counts then blocks; once every expert
// rank has replied and its results are in, put them back in place. A dense FFN offloaded to the
// expert ranks goes whole to the one that runs it; the decoder's final states go to every expert
// rank, which answers with the best logit of its lm_head columns. Every expert rank takes part in
// every exchange, with zero rows if need be, so no rank is ever left waiting. Each micro-batch lane
// has at most one exchange in flight; several lanes' exchanges are in flight at once.
//
// With --on-rank-failure continue, an expert rank that misses an exchange's deadline is declared
// lost: it is fenced (rank_fence.hpp), the other ranks are told, and every exchange in flight is
// started again on the live replicas (the old one is retired: its live ranks' results still land
// in its buffers, in order, and are dropped). A lost rank that held the only replica of an expert
// ends the run, naming both.
#pragma once

#include <functional>
#include <vector>

#include "model/experts.hpp"
#include "router/dispatch_policy.hpp"
#include "router/residency.hpp"
#include "runtime/deadline.hpp"
#include "runtime/messages.hpp"
#include "runtime/mpi/world.hpp"
#include "runtime/rank_stats.hpp"
#include "runtime/transport.hpp"
#include "runtime/wire.hpp"

namespace moe {

class Lanes;

struct ExchangeOptions {
  int d_model = 0;
  double deadline_seconds = 60;
  int first_expert_rank = 1;  // expert ranks are first_expert_rank..world size-1
  int lanes = 1;
  bool continue_on_rank_failure = false;
  const ExpertMap* expert_map =
      nullptr;  // the run's: which experts a lost rank leaves without replica
  // Memory budgets on the expert ranks: their replies say which experts are resident; tokens
  // go to a resident replica where there is one (under wait and on-demand the latency-aware
  // policy, with profiled load times, weighs a load against a busier resident replica instead),
  // and `miss_policy` decides for the experts with none.
  bool expert_budgets = false;
  MissPolicy miss_policy = MissPolicy::kSubstitute;
};

// What one exchange measured, for the policy and the benchmarks.
struct ExchangeStats {
  std::vector<int> rows_per_rank;      // index = rank
  std::vector<RankFeedback> feedback;  // every expert rank's reply, in arrival order
  double policy_us = 0;                // the dispatch policy's decision
};

// Counted over a rank's exchanges, for `moe profile --serving-rows`.
struct ExchangeTotals {
  int64_t started = 0;           // exchanges (sparse layers, dense FFNs, lm_heads) started
  double expert_compute_us = 0;  // the compute the expert ranks' replies reported, summed
  int64_t dense_started = 0;     // of those, dense FFNs (each goes whole to one expert rank)
  double dense_compute_us = 0;
  int64_t lm_head_started = 0;  // and lm_heads (each expert rank an equal share of the columns)
  double lm_head_compute_us = 0;
};

class ExpertExchanges {
 public:
  ExpertExchanges(const World& world, DataTransport& transport, const ExchangeOptions& options,
                  RankRecorder& recorder);
  ~ExpertExchanges();

  // Starts lane `lane`'s exchange of a sparse layer's rows (rows_in[dispatch.rows(), d_model],
  // grouped by expert), placed by `policy` on `map`'s replicas.
  void start_sparse(int lane, int64_t step, int moe_layer, const GateResult& gate,
                    const ExpertDispatch& dispatch, const float* rows_in, const ExpertMap& map,
                    DispatchPolicy& policy, const std::vector<float>& demand = {});
  // Starts lane `lane`'s exchange of a dense FFN's rows (x[rows, d_model]) with the expert rank
  // that runs it (`rank`); the others take part with none.
  void start_dense(int lane, int64_t step, int dense_layer, int rank, int rows, const float* x);
  // Starts lane `lane`'s exchange of the decoder's final states (states[rows, d_model]): every
  // expert rank computes the logits of its lm_head columns.
  void start_lm_head(int lane, int64_t step, int rows, const float* states);
  // True once the lane's exchange has every reply and every result block.
  bool ready(int lane) const;
  // Moves every exchange on without waiting: replies in, transfers tested. Throws naming the
  // rank when one failed, or went silent past the deadline.
  void progress();
  // The ready exchange's results into rows_out (the order rows_in had); `policy` (the one it
  // was started with, if sparse) observes the replies.
  const ExchangeStats& finish(int lane, float* rows_out, DispatchPolicy* policy);
  // The ready lm_head exchange's answer: each row's largest logit over the expert ranks' columns
  // and its id (the lowest of equal ones).
  void finish_lm_head(int lane, std::vector<float>& best_logit, std::vector<int>& best_id);
  // Waits for the lane's exchange, letting other lanes run meanwhile when `lanes` is given.
  void wait(int lane, Lanes* lanes);
  // Under expert budgets: rewrites the gate of sparse layer `moe_layer` (logits[T, E], inputs
  // x[T, d]) where a token's expert has no resident live replica, by the miss policy (before it
  // is dispatched); demand[E]: what the gate asked of each expert (WorkHeader::demand).
  void adjust_for_residency(int moe_layer, const float* logits, const float* x, int d, int experts,
                            GateResult& gate, const ExpertMap& map, std::vector<float>& demand);
  const ResidencyCounters& budget_counters() const { return budget_counters_; }
  const ExchangeTotals& totals() const { return totals_; }
  // The expert ranks are told that this attention rank sends no more work.
  void say_done();
  // A control message that is not a reply (RankLost, sent by another attention rank, may come at
  // any time): handled; false for anything else.
  bool take_notice(const Envelope& e);
  // On a rank that also serves experts (co-located): progress() hands `take` every message that
  // is not a reply or a notice first (it returns whether it took it), and calls `serve` after.
  // `waited_for` names the ranks whose work the rank's own experts wait for: at a deadline, the
  // ranks that are silent (every rank's exchange waits for the slowest rank's work).
  void serve_alongside(std::function<bool(const Envelope&)> take, std::function<void()> serve,
                       std::function<std::vector<int>()> waited_for) {
    take_other_ = std::move(take);
    serve_ = std::move(serve);
    waited_for_ = std::move(waited_for);
  }
  bool is_lost(int rank) const { return lost_.at(rank) != 0; }
  // The ranks declared lost so far, in order.
  const std::vector<int>& lost_ranks() const { return lost_order_; }

 private:
  struct InFlight;
  // The lane's exchange, ready for rows that no policy places (a dense FFN's, the lm_head's).
  InFlight& begin_unrouted(int lane);
  // The ready exchange done with (its wait traced, its sends complete, the policy told); returns
  // when its combine began, for finished().
  double complete(int lane, DispatchPolicy* policy);
  void finished(int lane, double t_combine);
  void launch(InFlight& x, std::vector<WorkHeader>& headers, int64_t step, int lane);
  InFlight* find(uint64_t exchange);
  // Declares `rank` lost (see above); `tell`: the other ranks have not heard of it yet.
  void lose(int rank, const std::string& why, bool tell);
  // Lane `lane`'s exchange, retired, started again without the lost ranks.
  void restart(int lane);
  // `map` without the lost ranks' replicas.
  const ExpertMap& live(const ExpertMap& map);
  // Whether `rank` reported expert `e` of `layer` resident (true until it has reported).
  bool reported_resident(int rank, int layer, int e) const;
  // `map` with each expert's replicas cut to those where it is resident, where there is one.
  const ExpertMap& preferring_resident(const ExpertMap& map);
  // "1 (host a), 3 (host b)": the expert ranks that have not replied to x yet.
  std::string not_replied(const InFlight& x) const;

  const World& world_;
  DataTransport& transport_;
  ExchangeOptions options_;
  RankRecorder& recorder_;
  uint64_t next_exchange_ = 0;
  std::vector<std::unique_ptr<InFlight>> lanes_;  // index = lane
  std::vector<uint8_t> lost_;                     // index = rank
  std::vector<int> lost_order_;
  // Exchanges given up for a lost rank: kept (with their buffers) for the rest of the run.
  std::vector<std::unique_ptr<InFlight>> retired_;
  ExpertMap live_map_;
  const ExpertMap* live_of_ = nullptr;
  size_t live_lost_ = 0;  // how many lost ranks live_map_ leaves out
  std::vector<std::vector<std::vector<uint8_t>>> resident_;  // [rank][layer][expert], as reported
  ExpertMap preferred_map_;
  ResidencyCounters budget_counters_;
  ExchangeTotals totals_;
  std::function<bool(const Envelope&)> take_other_;
  std::function<void()> serve_;
  std::function<std::vector<int>()> waited_for_;
};

// One lane's expert executor: each sparse layer's experts (and, when offloaded, each dense FFN)
// on the expert ranks through the lane's exchanges.
class RemoteExpertExecutor final : public ExpertExecutor {
 public:
  // dense_rank(dense_layer): the expert rank of each dense FFN block, or -1 where it runs here.
  // lm_head_kept: the lm_head columns this rank computes itself (the vocabulary: all of them).
  RemoteExpertExecutor(ExpertExchanges& exchanges, const ExpertMap& map, DispatchPolicy& policy,
                       std::function<int(int)> dense_rank = {}, int lane = 0,
                       Lanes* lanes = nullptr, int lm_head_kept = 0)
      : exchanges_(exchanges),
        map_(map),
        policy_(policy),
        dense_rank_(std::move(dense_rank)),
        lane_(lane),
        lanes_(lanes),
        lm_head_kept_(lm_head_kept) {}
  void run(const SparseFfnWeights& layer, int64_t step, const GateResult& gate,
           const ExpertDispatch& dispatch, const float* rows_in, float* rows_out) override;
  void adjust_routing(int moe_layer, const float* logits, const float* x, int d,
                      GateResult& gate) override {
    exchanges_.adjust_for_residency(moe_layer, logits, x, d,
                                    int(map_.replicas.at(moe_layer).size()), gate, map_, demand_);
  }
  bool runs_dense(const BlockWeights& block) const override {
    return dense_rank_ && dense_rank_(block.dense_layer) >= 0;
  }
  void run_dense(const BlockWeights& block, int64_t step, int rows, const float* x,
                 float* y) override;
  int lm_head_kept(int vocab) const override { return lm_head_kept_ > 0 ? lm_head_kept_ : vocab; }
  void start_lm_head(int64_t step, int rows, const float* states) override;
  void finish_lm_head(std::vector<float>& best_logit, std::vector<int>& best_id) override;
  // What the last call measured.
  const ExchangeStats& last() const { return *last_; }

 private:
  ExpertExchanges& exchanges_;
  const ExpertMap& map_;
  DispatchPolicy& policy_;
  std::function<int(int)> dense_rank_;
  int lane_;
  Lanes* lanes_;
  int lm_head_kept_;
  const ExchangeStats* last_ = nullptr;
  std::vector<float> demand_;  // of the sparse layer being routed (under expert budgets)
};

}  // namespace moe
