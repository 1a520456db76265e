// The latency-aware policy against its definition: with a latency model that has learned a known
// world ("a rank's latency is its profiled cost plus transport"), it keeps experts whole where
// reading weights dominates, splits a hot expert where compute dominates, and gives a slower
// replica proportionally less work.
#include "router/latency_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

namespace moe {
namespace {

constexpr int kDModel = 16;

// A rank whose expert FFN costs fixed_us (reading the weights) plus us_per_token.
RankProfile rank_profile(int rank, double fixed_us, double us_per_token) {
  RankProfile p;
  p.rank = rank;
  p.device = "cpu:1";
  p.expert.tokens = {1, 1024};
  p.expert.median_us = {fixed_us + us_per_token, fixed_us + 1024 * us_per_token};
  p.link_latency_us = 5;
  p.link_bytes_per_us = 1000;
  return p;
}

// A model trained on assignments of 1..8 experts with 1..32 rows each, whose latency is exactly
// the profile table (sum of the experts' curves plus transport).
std::shared_ptr<LatencyModel> model_of(const Profile& profile) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> experts(1, 8), rows(1, 32);
  std::vector<LatencySample> samples;
  for (int i = 0; i < 3000; ++i) {
    const RankProfile& p = profile.ranks[i % profile.ranks.size()];
    RankLoad before;
    const int k = experts(rng);
    int last = 0;
    for (int e = 0; e < k; ++e) {
      last = rows(rng);
      if (e + 1 < k) {
        before.tokens += last;
        before.profiled_us += p.expert.at(last);
      }
    }
    const auto x = latency_features(0.5, 1.0, last, 0, before, p, kDModel);
    samples.push_back({x, x[6] + x[7]});
  }
  return std::make_shared<LatencyModel>(LatencyModel::train(samples, TrainOptions{}, nullptr));
}

// One layer whose experts hold `rows[e]` tokens each, every expert on every rank of `ranks`.
struct Call {
  ExpertMap map;
  ExpertDispatch dispatch;
  GateResult gate;
  Call(const std::vector<int>& rows, const std::vector<int>& ranks) {
    map.replicas = {std::vector<std::vector<int>>(rows.size(), ranks)};
    dispatch.offsets = {0};
    for (int n : rows) dispatch.offsets.push_back(dispatch.offsets.back() + n);
    for (int t = 0; t < dispatch.rows(); ++t) dispatch.token_of_row.push_back(t);
    gate.probability.assign(dispatch.rows(), 0.5f);
    gate.entropy.assign(dispatch.rows(), 1.0f);
  }
  // ranks_of_expert[e] = the set of ranks serving expert e's rows.
  std::vector<std::set<int>> ranks_of_expert(const std::vector<int>& rank_of_row) const {
    std::vector<std::set<int>> out(dispatch.offsets.size() - 1);
    for (size_t e = 0; e + 1 < dispatch.offsets.size(); ++e)
      for (int r = dispatch.offsets[e]; r < dispatch.offsets[e + 1]; ++r)
        out[e].insert(rank_of_row[r]);
    return out;
  }
};

// The latency-aware policy's choice for `call` on ranks with these profiles.
std::vector<int> assign(const std::vector<RankProfile>& ranks, const Call& call) {
  Profile profile;
  profile.ranks = ranks;
  LatencyAwarePolicy policy(model_of(profile), profile, kDModel);
  std::vector<int> rank_of_row;
  policy.assign(0, call.dispatch, call.gate, call.map, rank_of_row);
  return rank_of_row;
}

int count_of(const std::vector<int>& v, int x) { return int(std::count(v.begin(), v.end(), x)); }

}  // namespace

TEST(LatencyAwarePolicy, SendsMoreTokensToTheFasterReplica) {
  // Compute-bound experts, rank 2 four times slower: balanced finish times put ~4/5 of one hot
  // expert's tokens on rank 1.
  const Call call({40}, {1, 2});
  const auto ranks = assign({rank_profile(1, 0, 10), rank_profile(2, 0, 40)}, call);
  EXPECT_GE(count_of(ranks, 1), 28);
  EXPECT_LE(count_of(ranks, 1), 36);
}

TEST(LatencyAwarePolicy, KeepsExpertsWholeWhenReadingWeightsDominates) {
  // Two equal ranks, each expert costs 1 ms to open and 5 µs per token: splitting an expert
  // would read its weights twice. Eight experts of 4 tokens: four whole experts per rank.
  const Call call({4, 4, 4, 4, 4, 4, 4, 4}, {1, 2});
  const auto ranks = assign({rank_profile(1, 1000, 5), rank_profile(2, 1000, 5)}, call);
  for (const auto& served : call.ranks_of_expert(ranks)) EXPECT_EQ(served.size(), 1u);
  EXPECT_EQ(count_of(ranks, 1), 16);
  EXPECT_EQ(count_of(ranks, 2), 16);
}

TEST(LatencyAwarePolicy, SplitsAHotExpertWhenComputeDominates) {
  // No cost to open an expert, 10 µs per token: one expert of 64 tokens is split about evenly.
  const Call call({64}, {1, 2});
  const auto ranks = assign({rank_profile(1, 0, 10), rank_profile(2, 0, 10)}, call);
  EXPECT_NEAR(count_of(ranks, 1), 32, 4);
}

TEST(LatencyAwarePolicy, GivesTheSlowerReplicaFewerWholeExperts) {
  // Rank 2 four times slower, weight-bound experts of 2 tokens: rank 2 takes at most a fifth of
  // the experts (balanced finish times), rank 1 the rest, none split.
  const Call call(std::vector<int>(10, 2), {1, 2});
  const auto ranks = assign({rank_profile(1, 1000, 5), rank_profile(2, 4000, 20)}, call);
  int on_slow = 0;
  for (const auto& served : call.ranks_of_expert(ranks)) {
    EXPECT_EQ(served.size(), 1u);
    on_slow += served.count(2);
  }
  EXPECT_GE(on_slow, 1);
  EXPECT_LE(on_slow, 2);
}

// Under memory budgets a replica that would load the expert pays its profiled load: equal ranks,
// expert 0 resident on rank 2 only, so its tokens go there; once rank 2 is busier than a load
// (a long queue of its own), rank 1 loads it instead. Without measured loads the policy does not
// weigh residency at all (the caller then gives it only the resident replicas).
TEST(LatencyAwarePolicy, PrefersAResidentReplicaUnlessItIsBusierThanALoad) {
  Profile profile;
  profile.ranks = {rank_profile(1, 100, 5), rank_profile(2, 100, 5)};
  const auto model = model_of(profile);
  {
    LatencyAwarePolicy unmeasured(model, profile, kDModel);
    EXPECT_FALSE(unmeasured.weighs_residency());
  }
  for (auto& r : profile.ranks) r.expert_load_us = 2000;
  LatencyAwarePolicy policy(model, profile, kDModel);
  EXPECT_TRUE(policy.weighs_residency());
  policy.set_residency([](int rank, int, int e) { return !(e == 0 && rank == 1); });
  const Call call({8}, {1, 2});
  std::vector<int> ranks;
  policy.assign(0, call.dispatch, call.gate, call.map, ranks);
  EXPECT_EQ(count_of(ranks, 2), 8);
  // Rank 2 also busy with expert 1 (resident there only): 30 tokens, 250 µs in all, less than a
  // load. Expert 0 still stays on rank 2; without the pricing it would go to the idle rank 1.
  Call less({8, 30}, {1, 2});
  less.map.replicas[0][1] = {2};
  policy.assign(0, less.dispatch, less.gate, less.map, ranks);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(ranks[r], 2) << "row " << r;
  LatencyAwarePolicy unpriced(model, profile, kDModel);
  unpriced.assign(0, less.dispatch, less.gate, less.map, ranks);
  EXPECT_GT(count_of(ranks, 1), 0) << "the case does not test the pricing";
  // Rank 2 now busy with 30 tokens of a resident expert 1 at 400 µs a token (12 ms): loading
  // expert 0 on rank 1 (2 ms) is sooner.
  Call busy({8, 30}, {1, 2});
  busy.map.replicas[0][1] = {2};
  Profile slow = profile;
  slow.ranks[1] = rank_profile(2, 100, 400);
  slow.ranks[1].expert_load_us = 2000;
  LatencyAwarePolicy weighing(model_of(slow), slow, kDModel);
  weighing.set_residency([](int rank, int, int e) { return !(e == 0 && rank == 1); });
  weighing.assign(0, busy.dispatch, busy.gate, busy.map, ranks);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(ranks[r], 1) << "row " << r;
}

TEST(LatencyAwarePolicy, HonoursSingleReplicasAndSkipsEmptyExperts) {
  Profile profile;
  profile.ranks = {rank_profile(1, 1000, 5), rank_profile(2, 1000, 5), rank_profile(3, 1000, 5)};
  LatencyAwarePolicy policy(model_of(profile), profile, kDModel);
  Call call({6, 0, 5}, {1, 2});
  call.map.replicas[0][0] = {3};  // expert 0 lives on rank 3 only
  std::vector<int> ranks;
  policy.assign(0, call.dispatch, call.gate, call.map, ranks);
  ASSERT_EQ(ranks.size(), 11u);
  for (int r = 0; r < 6; ++r) EXPECT_EQ(ranks[r], 3);
  for (int r = 6; r < 11; ++r) EXPECT_TRUE(ranks[r] == 1 || ranks[r] == 2);
}

}  // namespace moe
