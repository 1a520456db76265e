// The top-1 gate and the expert permutation against their definitions.
#include "router/gate.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "router/expert_dispatch.hpp"

namespace moe {

TEST(Gate, PicksArgmaxWithItsSoftmaxProbability) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f};  // one token, three experts
  GateResult g;
  top1_gate(logits.data(), 1, 1, 3, 4, g);
  const double z = std::exp(0.0) + std::exp(2.0) + std::exp(1.0);
  EXPECT_EQ(g.expert[0], 1);
  EXPECT_NEAR(g.probability[0], std::exp(2.0) / z, 1e-7);
  EXPECT_EQ(g.kept[0], 1);
}

TEST(Gate, TiesGoToTheFirstExpertLikeTorchArgmax) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f};
  GateResult g;
  top1_gate(logits.data(), 1, 1, 3, 1, g);
  EXPECT_EQ(g.expert[0], 1);
}

TEST(Gate, DropsTokensBeyondCapacityInPositionOrderPerSequence) {
  // Two sequences of four tokens; every token prefers expert 0; capacity 2.
  std::vector<float> logits;
  for (int t = 0; t < 8; ++t) logits.insert(logits.end(), {5.0f, 0.0f});
  GateResult g;
  top1_gate(logits.data(), 2, 4, 2, 2, g);
  const std::vector<uint8_t> expected = {1, 1, 0, 0, 1, 1, 0, 0};
  EXPECT_EQ(g.kept, expected);
}

TEST(ExpertDispatch, GroupsKeptTokensByExpertInPositionOrder) {
  GateResult g;
  g.expert = {2, 0, 2, 1, 0};
  g.kept = {1, 1, 1, 0, 1};
  g.probability.assign(5, 1.0f);
  ExpertDispatch d;
  plan_expert_dispatch(g, 3, d);
  EXPECT_EQ(d.offsets, (std::vector<int>{0, 2, 2, 4}));
  EXPECT_EQ(d.token_of_row, (std::vector<int>{1, 4, 0, 2}));
}

}  // namespace moe
