// GPU-aware placement (router/placement.hpp) against its definition: every expert placed, each
// rank's memory respected, faster ranks given more, the hottest expert replicated, and the
// predicted times it minimises computed as stated.
#include "router/placement.hpp"

#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <set>

#include "runtime/error.hpp"

namespace moe {
namespace {

// Ranks whose expert FFN costs fixed_us + us_per_token × tokens, with a free link.
Profile profile_of(const std::vector<std::pair<double, double>>& fixed_and_per_token) {
  Profile p;
  p.d_model = 8;
  int rank = 1;
  for (auto [fixed, per_token] : fixed_and_per_token) {
    RankProfile r;
    r.rank = rank++;
    r.expert.tokens = {1, 1024};
    r.expert.median_us = {fixed + per_token, fixed + 1024 * per_token};
    r.link_latency_us = 0;
    r.link_bytes_per_us = 1e12;
    p.ranks.push_back(r);
  }
  return p;
}

PlacementProblem problem_of(const Profile& profile, std::vector<std::vector<double>> load) {
  PlacementProblem p;
  p.profile = &profile;
  p.load = std::move(load);
  for (const auto& r : profile.ranks) p.ranks.push_back(r.rank);
  p.bytes_per_expert = 1000;
  return p;
}

int experts_on(const ExpertMap& map, int rank) {
  int n = 0;
  for (int l = 0; l < map.num_layers(); ++l)
    for (int e = 0; e < map.num_experts(); ++e) n += map.holds(rank, l, e);
  return n;
}

}  // namespace

TEST(Placement, PlacesEveryExpertOnceOnAnExpertRank) {
  const Profile profile = profile_of({{100, 1}, {100, 1}, {100, 1}});
  const auto p = problem_of(profile, {{9, 1, 4, 4, 2, 7, 3, 5}, {1, 1, 1, 1, 1, 1, 1, 30}});
  const ExpertMap map = place_experts(p);
  ASSERT_EQ(map.num_layers(), 2);
  for (int l = 0; l < 2; ++l)
    for (int e = 0; e < 8; ++e) {
      ASSERT_EQ(map.ranks_of(l, e).size(), 1u);
      EXPECT_TRUE(std::set<int>({1, 2, 3}).count(map.ranks_of(l, e)[0]));
    }
}

TEST(Placement, RespectsEachRanksMemoryAndRejectsAModelThatCannotFit) {
  // Rank 1 is far faster, so without a budget it would take most experts.
  const Profile skewed = profile_of({{1, 0.01}, {100, 1}, {100, 1}});
  auto p = problem_of(skewed, {{5, 5, 5, 5, 5, 5, 5, 5}});
  p.memory_per_rank = 3 * p.bytes_per_expert;
  const ExpertMap map = place_experts(p);
  for (int r : {1, 2, 3}) EXPECT_LE(experts_on(map, r), 3) << "rank " << r;
  EXPECT_EQ(experts_on(map, 1) + experts_on(map, 2) + experts_on(map, 3), 8);
  p.memory_per_rank = 2 * p.bytes_per_expert;  // 6 slots for 8 experts
  EXPECT_THROW(place_experts(p), Error);
}

TEST(Placement, GivesTheFasterRankMoreAndBeatsRoundRobin) {
  const Profile profile = profile_of({{100, 1}, {400, 4}});  // rank 2 four times slower
  const auto p = problem_of(profile, {{8, 8, 8, 8, 8, 8, 8, 8}});
  const ExpertMap placed = place_experts(p);
  EXPECT_GE(experts_on(placed, 1), 6);
  const ExpertMap rr = round_robin_expert_map(1, 8, 1, 3);
  EXPECT_LT(predicted_layer_time_us(p, placed), 0.7 * predicted_layer_time_us(p, rr));
}

TEST(Placement, ReplicatesTheHottestExpertOfTheSlowestRank) {
  const Profile profile = profile_of({{10, 1}, {10, 1}, {10, 1}, {10, 1}});
  auto p = problem_of(profile, {{400, 10, 10, 10, 10, 10, 10, 10}});
  p.extra_replicas = 1;
  const ExpertMap map = place_experts(p);
  EXPECT_EQ(map.ranks_of(0, 0).size(), 2u);
  for (int e = 1; e < 8; ++e) EXPECT_EQ(map.ranks_of(0, e).size(), 1u) << "expert " << e;
  // And the replica lowered the predicted time: expert 0 alone (410 µs) was the bottleneck.
  auto single = map;
  single.replicas[0][0].resize(1);
  EXPECT_LT(predicted_layer_time_us(p, map), predicted_layer_time_us(p, single));
}

TEST(Placement, PredictedRankTimeIsItsExpertsCurvesPlusItsLink) {
  Profile profile = profile_of({{100, 2}, {50, 1}});
  profile.ranks[0].link_latency_us = 7;
  profile.ranks[0].link_bytes_per_us = 32;  // 8 floats = 32 bytes a token: 1 µs a token
  auto p = problem_of(profile, {{4, 6, 10}});
  ExpertMap map;
  map.replicas = {{{1}, {1}, {1, 2}}};  // expert 2's 10 tokens split 5 / 5
  const auto t = predicted_rank_times_us(p, map, 0);
  // Rank 1: (100 + 2·4) + (100 + 2·6) + (100 + 2·5) = 330 compute, 15 tokens there and back.
  EXPECT_NEAR(t[1], 330 + 2 * (7 + 15), 1e-9);
  EXPECT_NEAR(t[2], 50 + 5, 1e-9);
}

// Under a budget of two resident experts per rank (one layer: two seats), the four hottest experts
// take the four seats, so all of them stay resident; placement without the budget gives the much
// faster rank three of them, one of which it could not keep.
TEST(Placement, UnderABudgetTheHottestExpertsFillTheSeats) {
  const Profile profile = profile_of({{10, 1}, {40, 4}});
  auto p = problem_of(profile, {{40, 30, 20, 10, 1, 1, 1, 1}});
  const ExpertMap unbudgeted = place_experts(p);
  p.resident_per_rank = 2;
  const ExpertMap placed = place_experts(p);
  const double top_four = 100.0 / 104.0;
  EXPECT_NEAR(predicted_resident_share(p, placed), top_four, 1e-12);
  EXPECT_LT(predicted_resident_share(p, unbudgeted), top_four - 0.05);
  for (int r : {1, 2}) {
    int hot = 0;
    for (int e = 0; e < 4; ++e) hot += placed.holds(r, 0, e);
    EXPECT_EQ(hot, 2) << "rank " << r;
  }
  const auto resident = resident_experts(p, placed, 0);
  for (int e = 0; e < 8; ++e) {
    const int r = placed.ranks_of(0, e)[0];
    EXPECT_EQ(resident[r][e], e < 4 ? 1 : 0) << "expert " << e;
  }
}

TEST(Placement, CommitteeSeatsSpreadOverTheLayersAsTheRanksSpreadThem) {
  const Profile profile = profile_of({{10, 1}});
  auto p = problem_of(profile, {{1, 1}, {1, 1}, {1, 1}});
  EXPECT_EQ(committee_seats(p, 0), INT_MAX);  // no budget
  p.resident_per_rank = 5;                    // 5 seats over 3 layers: 2, 2, 1
  EXPECT_EQ(committee_seats(p, 0), 2);
  EXPECT_EQ(committee_seats(p, 1), 2);
  EXPECT_EQ(committee_seats(p, 2), 1);
}

// A rank's expert beyond its seats costs P(called) = 1 - e^-n times its profiled load.
TEST(Placement, ANonResidentExpertAddsItsExpectedLoad) {
  Profile profile = profile_of({{100, 2}});
  profile.ranks[0].expert_load_us = 5000;
  auto p = problem_of(profile, {{4, 6, 0.5}});
  p.resident_per_rank = 2;
  ExpertMap map;
  map.replicas = {{{1}, {1}, {1}}};
  const auto t = predicted_rank_times_us(p, map, 0);
  const double curves = (100 + 2 * 4) + (100 + 2 * 6) + (100 + 2 * 0.5);
  EXPECT_NEAR(t[1], curves + (1 - std::exp(-0.5)) * 5000, 1e-6);
  p.resident_per_rank = 0;  // all resident
  EXPECT_NEAR(predicted_rank_times_us(p, map, 0)[1], curves, 1e-6);
  // Under a budget a replica goes only where it would be resident: here no rank has a seat.
  Profile two = profile_of({{10, 1}, {10, 1}});
  auto q = problem_of(two, {{400, 10, 10, 10}});
  q.resident_per_rank = 2;
  q.extra_replicas = 1;
  const ExpertMap replicated = place_experts(q);
  for (int e = 0; e < 4; ++e) EXPECT_EQ(replicated.ranks_of(0, e).size(), 1u);
}

}  // namespace moe
