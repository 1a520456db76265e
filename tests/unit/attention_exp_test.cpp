// Attention's vectorisable e^x against the double-precision exp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "model/attention.hpp"

namespace moe {

TEST(AttentionExp, WithinTwoTenthsOfAMillionthOfDoubleExpAcrossItsRange) {
  double worst = 0;
  for (int i = 0; i <= 2'000'000; ++i) {
    const float x = -87.3f * float(i) / 2'000'000.0f;
    const double want = std::exp(double(x));
    worst = std::max(worst, std::abs(double(exp_nonpositive(x)) - want) / want);
  }
  EXPECT_LE(worst, 3e-7) << "relative error";
}

TEST(AttentionExp, ZeroGivesOneAndMaskedOrTinyScoresGiveZero) {
  EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);  // the row's largest score weighs exactly 1
  EXPECT_EQ(exp_nonpositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(exp_nonpositive(-87.5f), 0.0f);
  EXPECT_EQ(exp_nonpositive(-1000.0f), 0.0f);
  EXPECT_GT(exp_nonpositive(-87.0f), 0.0f);
}

}  // namespace moe
