// The committee planner against its definition: seats to the experts of most routed mass, memory
// with one expert in flight, latency from the misses' loads, and its file.
#include "router/memory_plan.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "runtime/error.hpp"
#include "test_files.hpp"

namespace moe {
namespace {

// Two sparse layers of three experts. Layer 0 (encoder): one call of 4 tokens, experts 0, 0, 1, 2
// with probability 1. Layer 1 (decoder): two steps of one sequence, expert 2 then expert 1, 0.5.
std::vector<RoutingRecord> trace() {
  RoutingRecord enc{0, 0, 0, 1, 4, {0, 0, 1, 2}, {1, 1, 1, 1}, {1, 1, 1, 1}, {0, 0, 0, 0}};
  RoutingRecord d1{0, 1, 1, 1, 1, {2}, {0.5f}, {1}, {0}};
  RoutingRecord d2{0, 2, 1, 1, 1, {1}, {0.5f}, {1}, {0}};
  return {enc, d1, d2};
}

MemoryPlanInputs inputs(MissPolicy policy) {
  MemoryPlanInputs in;
  in.layers = 2;
  in.experts = 3;
  in.expert_bytes = 100;
  in.base_ms_per_token = 2.0;
  in.load_ms = 10.0;
  in.policy = policy;
  return in;
}

}  // namespace

TEST(MemoryPlan, SeatsGoToTheExpertsOfMostRoutedMassWithOneExpertInFlight) {
  // 400 bytes: 3 seats and one in flight. Masses: (0,0) 2, (0,1) 1, (0,2) 1, (1,2) .5, (1,1) .5.
  const MemoryPlan p = plan_memory(trace(), inputs(MissPolicy::kSubstitute), 400, 0);
  EXPECT_EQ(p.committees, (std::vector<int>{3, 0}));
  EXPECT_EQ(p.members[0], (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.memory_bytes, 400u);
  EXPECT_NEAR(p.resident_mass, 4.0 / 5.0, 1e-12);
  EXPECT_DOUBLE_EQ(p.ms_per_token, 2.0);  // substitute loads nothing in a step
  EXPECT_TRUE(p.feasible);
}

TEST(MemoryPlan, LatencyCountsTheMissedExpertsLoadsPerGeneratedToken) {
  // 300 bytes: 2 seats, both in layer 0 (experts 0 and 1): layer 0 misses expert 2 once, layer 1
  // misses one expert in each of its two calls: 3 loads for 2 generated tokens.
  const MemoryPlan p = plan_memory(trace(), inputs(MissPolicy::kOnDemand), 300, 0);
  EXPECT_EQ(p.committees, (std::vector<int>{2, 0}));
  EXPECT_DOUBLE_EQ(p.ms_per_token, 2.0 + 3.0 / 2.0 * 10.0);
  const MemoryPlan tight = plan_memory(trace(), inputs(MissPolicy::kOnDemand), 300, 10.0);
  EXPECT_FALSE(tight.feasible);
  EXPECT_NE(tight.why.find("latency"), std::string::npos);
  EXPECT_FALSE(plan_memory(trace(), inputs(MissPolicy::kWait), 50, 0).feasible);  // no expert fits
}

TEST(MemoryPlan, RoundTripsThroughItsFileAndRefusesABadOne) {
  const MemoryPlan p = plan_memory(trace(), inputs(MissPolicy::kSubstitute), 400, 0);
  const auto dir = test::temp_dir();
  std::ofstream(dir / "plan.json") << memory_plan_to_json(p, MissPolicy::kSubstitute);
  const MemoryPlan back = load_memory_plan((dir / "plan.json").string(), 2, 3);
  EXPECT_EQ(back.committees, p.committees);
  EXPECT_EQ(back.members, p.members);
  EXPECT_NEAR(back.resident_mass, p.resident_mass, 1e-12);
  EXPECT_THROW(load_memory_plan((dir / "plan.json").string(), 3, 3), Error);  // other layers
  std::ofstream(dir / "bad.json") << R"({"committees": [1, 0], "members": [[5], []],
    "memory_bytes": 1, "resident_mass": 0, "ms_per_token": 0})";
  EXPECT_THROW(load_memory_plan((dir / "bad.json").string(), 2, 3), Error);
}

TEST(MemoryPlan, ATraceWithoutGenerationIsRefused) {
  std::vector<RoutingRecord> encoder_only = {trace()[0]};
  EXPECT_THROW(plan_memory(encoder_only, inputs(MissPolicy::kSubstitute), 400, 0), Error);
}

}  // namespace moe
