#include "router/latency_policy.hpp"

#include <algorithm>

#include "runtime/error.hpp"

namespace moe {

LatencyFeatures latency_features(double mean_score, double mean_entropy, int group_tokens,
                                 int expert_tokens, const RankLoad& load,
                                 const RankProfile& profile, int d_model) {
  const double all_tokens = load.tokens + group_tokens;
  const double bytes = all_tokens * d_model * sizeof(float);
  const double extra_us =
      profile.expert.at(expert_tokens + group_tokens) - profile.expert.at(expert_tokens);
  return {mean_score,
          mean_entropy,
          double(group_tokens),
          double(load.tokens),
          load.recent_latency_us,
          load.recent_queue_us,
          load.profiled_us + extra_us,
          all_tokens > 0 ? profile.round_trip_us(bytes) : 0.0};
}

void RankHistory::observe(const std::vector<RankFeedback>& feedback) {
  for (const auto& f : feedback) {
    if (f.rank >= int(latency_.size())) {
      latency_.resize(f.rank + 1, -1);
      queue_.resize(f.rank + 1, 0);
    }
    const double a = 0.25;  // weight of the newest reply
    latency_[f.rank] =
        latency_[f.rank] < 0 ? f.latency_us : (1 - a) * latency_[f.rank] + a * f.latency_us;
    queue_[f.rank] = (1 - a) * queue_[f.rank] + a * f.queue_us;
  }
}

RankLoad RankHistory::fresh(int rank) const {
  RankLoad load;
  if (rank < int(latency_.size()) && latency_[rank] >= 0) {
    load.recent_latency_us = latency_[rank];
    load.recent_queue_us = queue_[rank];
  }
  return load;
}

LatencyAwarePolicy::LatencyAwarePolicy(std::shared_ptr<const LatencyModel> model, Profile profile,
                                       int d_model)
    : model_(std::move(model)), profile_(std::move(profile)), d_model_(d_model) {
  MOE_CHECK(model_ && !model_->empty(),
            "latency-aware policy: needs a trained latency model (--latency-model)");
  for (const auto& p : profile_.ranks) {
    if (p.rank >= int(profile_of_.size())) profile_of_.resize(p.rank + 1, nullptr);
    profile_of_[p.rank] = &p;
  }
}

bool LatencyAwarePolicy::weighs_residency() const {
  for (const auto& p : profile_.ranks)
    if (p.expert_load_us <= 0) return false;
  return !profile_.ranks.empty();
}

double LatencyAwarePolicy::curve_us(int rank, int rows) const {
  return profile_of_[rank]->expert.at(rows);
}

double LatencyAwarePolicy::predict_us(int rank, const RankLoad& load, int group_rows, double score,
                                      double entropy) const {
  if (load.tokens <= 0) return 0;
  const int group = std::clamp(group_rows, 1, load.tokens);
  const double bytes = double(load.tokens) * d_model_ * sizeof(float);
  return model_->predict_us({score, entropy, double(group), double(load.tokens - group),
                             load.recent_latency_us, load.recent_queue_us, load.profiled_us,
                             profile_of_[rank]->round_trip_us(bytes)});
}

void LatencyAwarePolicy::assign(int layer, const ExpertDispatch& d, const GateResult& gate,
                                const ExpertMap& map, std::vector<int>& rank_of_row) {
  rank_of_row.resize(d.rows());
  const int E = int(d.offsets.size()) - 1;
  int ranks_needed = 0;
  for (int e = 0; e < E; ++e)
    for (int r : map.ranks_of(layer, e)) ranks_needed = std::max(ranks_needed, r + 1);
  for (int e = 0; e < E; ++e)
    if (d.count(e) > 0)
      for (int r : map.ranks_of(layer, e))
        MOE_CHECK(r < int(profile_of_.size()) && profile_of_[r],
                  "latency-aware policy: the profile has no entry for rank ", r);
  loads_.resize(ranks_needed);
  for (int r = 0; r < ranks_needed; ++r) loads_[r] = history_.fresh(r);
  finish_us_.assign(ranks_needed, 0.0);
  expert_rows_.assign(size_t(ranks_needed) * E, 0);
  expert_score_.assign(E, 0.0);
  expert_entropy_.assign(E, 0.0);
  order_.clear();
  for (int e = 0; e < E; ++e) {
    const int n = d.count(e);
    if (n == 0) continue;
    for (int row = d.offsets[e]; row < d.offsets[e + 1]; ++row) {
      const int t = d.token_of_row[row];
      if (t < int(gate.probability.size())) expert_score_[e] += gate.probability[t];
      if (t < int(gate.entropy.size())) expert_entropy_[e] += gate.entropy[t];
    }
    expert_score_[e] /= n;
    expert_entropy_[e] /= n;
    order_.push_back(e);
  }
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int a, int b) { return d.count(a) > d.count(b); });
  auto rows_of = [&](int rank, int e) -> int& { return expert_rows_[size_t(rank) * E + e]; };
  // What a rank's first rows of expert e add beyond the curve: a load where it is not resident.
  auto load_us = [&](int rank, int e) {
    return resident_ && !resident_(rank, layer, e) ? profile_of_[rank]->expert_load_us : 0.0;
  };
  // The load of `rank` after `delta` rows of expert e are added (or removed, delta < 0).
  auto moved = [&](int rank, int e, int delta) {
    RankLoad load = loads_[rank];
    const int before = rows_of(rank, e), after = before + delta;
    load.tokens += delta;
    load.profiled_us += curve_us(rank, after) - curve_us(rank, before) +
                        ((after > 0) - (before > 0)) * load_us(rank, e);
    return load;
  };
  auto apply = [&](int rank, int e, int delta) {
    loads_[rank] = moved(rank, e, delta);
    rows_of(rank, e) += delta;
    const int group = rows_of(rank, e) > 0 ? rows_of(rank, e) : loads_[rank].tokens;
    finish_us_[rank] = predict_us(rank, loads_[rank], group, expert_score_[e], expert_entropy_[e]);
  };

  // 1. Whole experts, largest first, each to the replica that would finish it soonest.
  for (int e : order_) {
    const auto& ranks = map.ranks_of(layer, e);
    int best = ranks[0];
    double best_us = 0;
    for (size_t i = 0; i < ranks.size() && ranks.size() > 1; ++i) {
      const double us = predict_us(ranks[i], moved(ranks[i], e, d.count(e)), d.count(e),
                                   expert_score_[e], expert_entropy_[e]);
      if (i == 0 || us < best_us) best_us = us, best = ranks[i];
    }
    apply(best, e, d.count(e));
  }

  // 2. Split or move experts off the slowest rank while that lowers its predicted time.
  for (int iteration = 0; iteration < 2 * int(order_.size()); ++iteration) {
    const int slowest =
        int(std::max_element(finish_us_.begin(), finish_us_.end()) - finish_us_.begin());
    double best_us = finish_us_[slowest];
    int best_e = -1, best_to = -1, best_rows = 0;
    for (int e : order_) {
      const int here = rows_of(slowest, e);
      const auto& ranks = map.ranks_of(layer, e);
      if (here == 0 || ranks.size() < 2) continue;
      for (int to : ranks) {
        if (to == slowest) continue;
        auto after = [&](int m) {  // predicted times of both ranks once m rows have moved
          return std::pair{predict_us(slowest, moved(slowest, e, -m), here - m, expert_score_[e],
                                      expert_entropy_[e]),
                           predict_us(to, moved(to, e, m), rows_of(to, e) + m, expert_score_[e],
                                      expert_entropy_[e])};
        };
        // The source gets faster and the target slower as m grows: find where they cross.
        int lo = 1, hi = here;
        while (lo < hi) {
          const int mid = (lo + hi) / 2;
          const auto [from_us, to_us] = after(mid);
          if (from_us <= to_us)
            hi = mid;
          else
            lo = mid + 1;
        }
        for (int m : {lo - 1, lo}) {
          if (m < 1) continue;
          const auto [from_us, to_us] = after(m);
          const double us = std::max(from_us, to_us);
          if (us < best_us) best_us = us, best_e = e, best_to = to, best_rows = m;
        }
      }
    }
    if (best_e < 0) break;
    apply(slowest, best_e, -best_rows);
    apply(best_to, best_e, best_rows);
  }

  // Rows of each expert to its ranks, in replica order.
  for (int e : order_) {
    int row = d.offsets[e];
    for (int r : map.ranks_of(layer, e))
      for (int k = 0; k < rows_of(r, e); ++k) rank_of_row[row++] = r;
  }
}

LatencySampleRecorder::LatencySampleRecorder(std::unique_ptr<DispatchPolicy> inner, Profile profile,
                                             int d_model, std::ostream& out)
    : inner_(std::move(inner)), profile_(std::move(profile)), d_model_(d_model), out_(out) {
  if (out_.tellp() <= 0) out_ << latency_samples_header() << "\n";  // once per file
}

void LatencySampleRecorder::assign(int layer, const ExpertDispatch& d, const GateResult& gate,
                                   const ExpertMap& map, std::vector<int>& rank_of_row) {
  inner_->assign(layer, d, gate, map, rank_of_row);
  // Replay the assignment expert by expert, keeping for each rank the features of its last group.
  pending_.clear();
  has_pending_.clear();
  std::vector<RankLoad> loads;
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e) {
    std::vector<int> rows_on;  // per rank, rows of expert e
    std::vector<double> score, entropy;
    for (int r = d.offsets[e]; r < d.offsets[e + 1]; ++r) {
      const int rank = rank_of_row[r];
      if (rank >= int(rows_on.size())) {
        rows_on.resize(rank + 1, 0);
        score.resize(rank + 1, 0);
        entropy.resize(rank + 1, 0);
      }
      const int t = d.token_of_row[r];
      ++rows_on[rank];
      if (t < int(gate.probability.size())) score[rank] += gate.probability[t];
      if (t < int(gate.entropy.size())) entropy[rank] += gate.entropy[t];
    }
    for (int rank = 0; rank < int(rows_on.size()); ++rank) {
      if (rows_on[rank] == 0) continue;
      if (rank >= int(loads.size())) {
        const int old = int(loads.size());
        loads.resize(rank + 1);
        pending_.resize(rank + 1);
        has_pending_.resize(rank + 1, 0);
        for (int r = old; r <= rank; ++r) loads[r] = history_.fresh(r);
      }
      const RankProfile& p = profile_.of(rank);
      const double load_us = resident_ && !resident_(rank, layer, e) ? p.expert_load_us : 0.0;
      pending_[rank] = latency_features(score[rank] / rows_on[rank], entropy[rank] / rows_on[rank],
                                        rows_on[rank], 0, loads[rank], p, d_model_);
      pending_[rank][6] += load_us;  // priced as the latency-aware policy prices it
      has_pending_[rank] = 1;
      loads[rank].tokens += rows_on[rank];
      loads[rank].profiled_us += p.expert.at(rows_on[rank]) + load_us;
    }
  }
}

void LatencySampleRecorder::observe(const std::vector<RankFeedback>& feedback) {
  for (const auto& f : feedback)
    if (f.rank < int(has_pending_.size()) && has_pending_[f.rank] && f.latency_us > 0)
      out_ << latency_sample_line({pending_[f.rank], f.latency_us}) << "\n";
  history_.observe(feedback);
  inner_->observe(feedback);
}

}  // namespace moe
