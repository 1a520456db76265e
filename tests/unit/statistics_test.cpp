// The statistics behind every table (router/statistics.hpp), against hand-computed values.
#include "router/statistics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

namespace moe {
namespace {

TEST(Statistics, MedianOfAnOddCountIsTheMiddleValue) {
  EXPECT_DOUBLE_EQ(median({5, 1, 3}), 3);
  EXPECT_DOUBLE_EQ(median({7}), 7);
}

TEST(Statistics, MedianOfAnEvenCountIsTheMeanOfTheMiddleTwo) {
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(median({}), 0);
}

TEST(Statistics, PercentileTakesTheValueAtFloorQN) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_DOUBLE_EQ(percentile(v, 0.99), 100);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 51);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.99), 7);
}

TEST(Statistics, StreamQuantilesAgreeWithPercentileWithinTheBucketWidth) {
  StreamQuantiles stream;
  std::vector<double> values;
  uint64_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const double v = 0.01 * std::exp(double(x >> 40) / double(1 << 24) * 12);  // 0.01 .. 1.6e3
    values.push_back(v);
    stream.add(v);
  }
  EXPECT_EQ(stream.count(), 20000);
  for (double q : {0.0, 0.5, 0.9, 0.99, 1.0}) {
    const double exact = percentile(values, q);
    EXPECT_NEAR(stream.quantile(q), exact, exact * 5.1e-4) << "q " << q;
  }
  StreamQuantiles empty;
  EXPECT_EQ(empty.quantile(0.5), 0);
  empty.add(0);
  EXPECT_EQ(empty.quantile(0.5), 0);
}

TEST(Statistics, ImbalanceIsMaxOverMeanOfTheRangeOnly) {
  EXPECT_DOUBLE_EQ(max_over_mean({99, 3, 1}, 1, 3), 1.5);
  EXPECT_DOUBLE_EQ(max_over_mean({0, 0, 0}, 1, 3), 0.0);
}

TEST(Statistics, PairedChangeIsTheMeanDifferenceWithItsStandardError) {
  // a - b = {-1, -3}: mean -2 against b's mean 10 is -20%; the differences' standard deviation
  // is sqrt(2), their standard error sqrt(2)/sqrt(2) = 1, i.e. 10% of b's mean.
  const auto [change, se] = paired_change({9, 7}, {10, 10});
  EXPECT_DOUBLE_EQ(change, -0.2);
  EXPECT_NEAR(se, 0.1, 1e-12);
  EXPECT_EQ(paired_change({1}, {2}), std::make_pair(0.0, 0.0));
}

}  // namespace
}  // namespace moe
