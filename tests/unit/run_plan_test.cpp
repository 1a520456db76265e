// The run plan on the wire: every rank must get exactly what rank 0 checked.
#include "ranks/run_plan.hpp"

#include <gtest/gtest.h>

#include "runtime/wire.hpp"

namespace moe {

TEST(RunPlan, RunPlanRoundTripsWithItsExpertMap) {
  RunPlan plan;
  plan.model_dir = "m";
  plan.expert_map = round_robin_expert_map(2, 4, 1, 3);
  plan.devices = {"cpu:1", "cpu:2", "cpu:1"};
  plan.deadline_seconds = 5;
  plan.continue_on_rank_failure = true;
  const auto back = decode_message<RunPlan>(open_envelope(0, encode_message(plan)));
  EXPECT_EQ(back.expert_map.replicas, plan.expert_map.replicas);
  EXPECT_EQ(back.devices, plan.devices);
  EXPECT_EQ(back.deadline_seconds, 5);
  EXPECT_TRUE(back.continue_on_rank_failure);
}

}  // namespace moe
