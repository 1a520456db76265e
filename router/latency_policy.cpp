#include "router/latency_policy.hpp"

#include <algorithm>

#include "runtime/error.hpp"

namespace moe {

LatencyFeatures latency_features(double mean_score, double mean_entropy, int group_tokens,
                                 const RankLoad& load, const RankProfile& profile, int d_model) {
  const double all_tokens = load.tokens + group_tokens;
  const double bytes = all_tokens * d_model * sizeof(float);
  return {mean_score,
          mean_entropy,
          double(group_tokens),
          double(load.tokens),
          load.recent_latency_us,
          load.recent_queue_us,
          load.profiled_us + profile.expert.at(group_tokens),
          all_tokens > 0 ? profile.round_trip_us(bytes) : 0.0};
}

void RankHistory::observe(const std::vector<RankFeedback>& feedback) {
  for (const auto& f : feedback) {
    if (f.rank >= int(latency_.size())) {
      latency_.resize(f.rank + 1, -1);
      queue_.resize(f.rank + 1, 0);
    }
    const double a = 0.25;  // weight of the newest reply
    latency_[f.rank] = latency_[f.rank] < 0 ? f.latency_us : (1 - a) * latency_[f.rank] + a * f.latency_us;
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

namespace {

struct Group {
  int expert;
  int first_row;
  int rows;
  double score, entropy;
};

// Each expert's rows cut into about two groups per replica, so a hot expert can be split.
std::vector<Group> make_groups(const ExpertDispatch& d, const GateResult& gate, const ExpertMap& map,
                               int layer) {
  std::vector<Group> groups;
  for (int e = 0; e + 1 < int(d.offsets.size()); ++e) {
    const int n = d.count(e);
    if (n == 0) continue;
    const int replicas = int(map.ranks_of(layer, e).size());
    const int size = replicas == 1 ? n : std::max(1, (n + 2 * replicas - 1) / (2 * replicas));
    for (int first = d.offsets[e]; first < d.offsets[e + 1]; first += size) {
      Group g{e, first, std::min(size, d.offsets[e + 1] - first), 0, 0};
      for (int r = g.first_row; r < g.first_row + g.rows; ++r) {
        const int t = d.token_of_row[r];
        if (t < int(gate.probability.size())) g.score += gate.probability[t];
        if (t < int(gate.entropy.size())) g.entropy += gate.entropy[t];
      }
      g.score /= g.rows;
      g.entropy /= g.rows;
      groups.push_back(g);
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) { return a.rows > b.rows; });
  return groups;
}

}  // namespace

LatencyAwarePolicy::LatencyAwarePolicy(std::shared_ptr<const LatencyModel> model, Profile profile,
                                       int d_model)
    : model_(std::move(model)), profile_(std::move(profile)), d_model_(d_model) {
  MOE_CHECK(model_ && !model_->empty(), "latency-aware policy: needs a trained latency model (--latency-model)");
}

void LatencyAwarePolicy::assign(int layer, const ExpertDispatch& d, const GateResult& gate,
                                const ExpertMap& map, std::vector<int>& rank_of_row) {
  rank_of_row.resize(d.rows());
  std::vector<RankLoad> loads;
  auto load_of = [&](int rank) -> RankLoad& {
    if (rank >= int(loads.size())) {
      const int old = int(loads.size());
      loads.resize(rank + 1);
      for (int r = old; r <= rank; ++r) loads[r] = history_.fresh(r);
    }
    return loads[rank];
  };
  for (const Group& g : make_groups(d, gate, map, layer)) {
    const auto& ranks = map.ranks_of(layer, g.expert);
    int best = ranks[0];
    if (ranks.size() > 1) {
      double best_us = 0;
      for (size_t i = 0; i < ranks.size(); ++i) {
        const RankProfile& p = profile_.of(ranks[i]);
        const double us = model_->predict_us(latency_features(g.score, g.entropy, g.rows, load_of(ranks[i]), p, d_model_));
        if (i == 0 || us < best_us) {
          best_us = us;
          best = ranks[i];
        }
      }
    }
    RankLoad& load = load_of(best);
    load.profiled_us += profile_.of(best).expert.at(g.rows);
    load.tokens += g.rows;
    for (int r = g.first_row; r < g.first_row + g.rows; ++r) rank_of_row[r] = best;
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
      pending_[rank] = latency_features(score[rank] / rows_on[rank], entropy[rank] / rows_on[rank],
                                        rows_on[rank], loads[rank], p, d_model_);
      has_pending_[rank] = 1;
      loads[rank].tokens += rows_on[rank];
      loads[rank].profiled_us += p.expert.at(rows_on[rank]);
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
