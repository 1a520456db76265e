// Dispatch policies and expert maps against their definitions.
#include "router/dispatch_policy.hpp"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace moe {
namespace {

// One layer, two experts: expert 0 on ranks {1, 2, 3}, expert 1 on rank {2}.
ExpertMap two_expert_map() {
  ExpertMap map;
  map.replicas = {{{1, 2, 3}, {2}}};
  return map;
}

ExpertDispatch rows(int expert0, int expert1) {
  ExpertDispatch d;
  d.offsets = {0, expert0, expert0 + expert1};
  d.token_of_row.resize(expert0 + expert1);
  return d;
}

std::map<int, int> count_ranks(const std::vector<int>& ranks, int begin, int end) {
  std::map<int, int> n;
  for (int i = begin; i < end; ++i) ++n[ranks[i]];
  return n;
}

}  // namespace

TEST(DispatchPolicy, StaticAlwaysUsesTheFirstReplica) {
  StaticPolicy p;
  std::vector<int> ranks;
  p.assign(0, rows(5, 2), GateResult{}, two_expert_map(), ranks);
  EXPECT_EQ(ranks, (std::vector<int>{1, 1, 1, 1, 1, 2, 2}));
}

TEST(DispatchPolicy, RoundRobinCyclesAndContinuesAcrossCalls) {
  RoundRobinPolicy p;
  std::vector<int> ranks;
  p.assign(0, rows(4, 1), GateResult{}, two_expert_map(), ranks);
  EXPECT_EQ(ranks, (std::vector<int>{1, 2, 3, 1, 2}));
  p.assign(0, rows(2, 0), GateResult{}, two_expert_map(), ranks);
  EXPECT_EQ(ranks, (std::vector<int>{2, 3}));
}

TEST(DispatchPolicy, UniformSharesDifferByAtMostOneToken) {
  UniformPolicy p;
  std::vector<int> ranks;
  for (int n : {0, 1, 2, 3, 7, 100}) {
    p.assign(0, rows(n, 1), GateResult{}, two_expert_map(), ranks);
    const auto counts = count_ranks(ranks, 0, n);
    int lo = n, hi = 0;
    for (int r : {1, 2, 3}) {
      const int c = counts.count(r) ? counts.at(r) : 0;
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
    EXPECT_LE(hi - lo, 1) << n << " tokens";
    EXPECT_EQ(ranks[n], 2);
  }
}

TEST(DispatchPolicy, RandomIsSeededReproducibleAndUsesOnlyReplicas) {
  RandomPolicy a(42), b(42), c(7);
  std::vector<int> ra, rb, rc;
  a.assign(0, rows(300, 5), GateResult{}, two_expert_map(), ra);
  b.assign(0, rows(300, 5), GateResult{}, two_expert_map(), rb);
  c.assign(0, rows(300, 5), GateResult{}, two_expert_map(), rc);
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
  const auto counts = count_ranks(ra, 0, 300);
  for (int r : {1, 2, 3}) EXPECT_GT(counts.at(r), 60) << "rank " << r;  // ~100 each
  for (int i = 300; i < 305; ++i) EXPECT_EQ(ra[i], 2);
}

TEST(DispatchPolicy, UnknownNameIsRejected) {
  EXPECT_THROW(make_basic_dispatch_policy("fastest", 1), Error);
}

TEST(ExpertMap, RoundRobinPlacesEveryExpertOnAnExpertRank) {
  const ExpertMap map = round_robin_expert_map(3, 8, 1, 4);
  for (int l = 0; l < 3; ++l)
    for (int e = 0; e < 8; ++e) {
      ASSERT_EQ(map.ranks_of(l, e).size(), 1u);
      EXPECT_GE(map.ranks_of(l, e)[0], 1);
      EXPECT_LE(map.ranks_of(l, e)[0], 3);
    }
  EXPECT_EQ(map.experts_on(1) + map.experts_on(2) + map.experts_on(3), 24);
}

TEST(ExpertMap, JsonRoundTripsAndBadMapsAreNamed) {
  const ExpertMap map = round_robin_expert_map(2, 4, 1, 3);
  const auto json = expert_map_to_json(map);
  EXPECT_EQ(parse_expert_map(json, "m.json", 2, 4, 1, 3).replicas, map.replicas);
  auto error_of = [](const nlohmann::json& j) {
    try {
      parse_expert_map(j, "m.json", 2, 4, 1, 3);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto missing_layer = json;
  missing_layer["layers"].erase(1);
  EXPECT_NE(error_of(missing_layer).find("layer 1 is missing"), std::string::npos);
  auto bad_rank = json;
  bad_rank["layers"][0]["experts"][2] = {0};
  EXPECT_NE(error_of(bad_rank).find("expert 2 is placed on rank 0, but the expert ranks are 1..2"),
            std::string::npos);
  auto short_layer = json;
  short_layer["layers"][1]["experts"].erase(3);
  EXPECT_NE(error_of(short_layer).find("layer 1 must list ranks for each of its 4 experts"),
            std::string::npos);
  // Numbers past int's range are refused, not truncated (2^32 + 1 to rank 1, 2^32 + 1 to layer 1).
  auto wide_rank = json;
  wide_rank["layers"][0]["experts"][2] = {int64_t(4294967297)};
  EXPECT_NE(error_of(wide_rank).find("is placed on rank 4294967297"), std::string::npos)
      << error_of(wide_rank);
  auto wide_layer = json;
  wide_layer["layers"][1]["layer"] = int64_t(4294967297);
  EXPECT_NE(error_of(wide_layer).find("layer 4294967297 does not exist"), std::string::npos)
      << error_of(wide_layer);
}

TEST(ExpertMap, MemoryBudgetIsEnforcedPerRank) {
  const ExpertMap map = round_robin_expert_map(1, 4, 1, 3);  // two experts per rank
  EXPECT_NO_THROW(check_expert_memory(map, 100, {0, 200, 200}, "m.json"));
  EXPECT_THROW(check_expert_memory(map, 100, {0, 200, 199}, "m.json"), Error);
}

}  // namespace moe
