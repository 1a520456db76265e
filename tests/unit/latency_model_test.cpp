// The latency predictor learns a known latency function, clamps inputs to the range it was
// trained on, and keeps its predictions when saved.
#include "router/latency_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "runtime/error.hpp"
#include "test_files.hpp"

namespace moe {
namespace {

// A known, non-linear "completion time": compute that grows with the profiled cost and with
// contention from already-assigned tokens, plus transport and a fixed overhead.
double synthetic_latency(const LatencyFeatures& x) {
  return 30.0 + 1.2 * x[6] * (1.0 + 0.002 * x[3]) + x[7] + 0.3 * x[5];
}

std::vector<LatencySample> synthetic_samples(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<LatencySample> out;
  for (int i = 0; i < n; ++i) {
    LatencySample s;
    const double tokens = 1 + std::floor(u(rng) * 256), assigned = std::floor(u(rng) * 512);
    s.x = {u(rng),
           2 * u(rng),
           tokens,
           assigned,
           100 + 900 * u(rng),
           50 * u(rng),
           tokens * (5 + 20 * u(rng)),
           10 + tokens * 0.5 * u(rng)};
    s.latency_us = synthetic_latency(s.x);
    out.push_back(s);
  }
  return out;
}

}  // namespace

TEST(LatencyModel, LearnsAKnownLatencyFunctionWithinFivePercentHeldOut) {
  TrainOptions options;
  options.epochs = 150;
  TrainReport report;
  const auto model = LatencyModel::train(synthetic_samples(3000, 1), options, &report);
  EXPECT_LT(report.mlp_mape, 0.05)
      << "linear " << report.linear_mape << ", profile " << report.profile_mape;
  EXPECT_LT(report.mlp_mape, report.linear_mape);
  // And on fresh samples it never saw.
  std::vector<double> predicted, actual;
  for (const auto& s : synthetic_samples(500, 99)) {
    predicted.push_back(model.predict_us(s.x));
    actual.push_back(s.latency_us);
  }
  EXPECT_LT(mean_abs_percentage_error(predicted, actual), 0.05);
}

TEST(LatencyModel, AFeatureBeyondTheTrainingRangePredictsAsAtItsEdge) {
  // The samples' in-flight times lie in 0-50 µs: 10^6 µs, or 0, cannot extrapolate past their
  // extremes (the training split's lie within them, so both clamp to the same edge).
  TrainOptions options;
  options.epochs = 20;
  const auto samples = synthetic_samples(500, 5);
  const auto model = LatencyModel::train(samples, options, nullptr);
  auto with_inflight = [&](double us) {
    LatencyFeatures x = samples[0].x;
    x[5] = us;
    return model.predict_us(x);
  };
  double lo = 1e300, hi = 0;
  for (const auto& s : samples) lo = std::min(lo, s.x[5]), hi = std::max(hi, s.x[5]);
  EXPECT_EQ(with_inflight(1e6), with_inflight(hi));
  EXPECT_EQ(with_inflight(0), with_inflight(lo));
  EXPECT_NE(with_inflight(lo), with_inflight(hi));
}

TEST(LatencyModel, WeightDecayPullsTheModelTowardsTheProfileTable) {
  // The MLP is a residual over the profile table, its weights decayed and its biases not: with a
  // strong decay the residual is the same for every input (the output bias), so the prediction is
  // the table times a constant; without, it follows the known function's departures from it.
  const auto samples = synthetic_samples(600, 7);
  auto spread_of_residual = [&](double weight_decay) {
    TrainOptions options;
    options.epochs = 30;
    options.weight_decay = weight_decay;
    const auto model = LatencyModel::train(samples, options, nullptr);
    double lo = 1e300, hi = -1e300;
    for (const auto& s : samples) {
      const double r = std::log(model.predict_us(s.x) / (s.x[6] + s.x[7]));
      lo = std::min(lo, r), hi = std::max(hi, r);
    }
    return hi - lo;
  };
  EXPECT_LT(spread_of_residual(300), 0.02);
  EXPECT_GT(spread_of_residual(0), 0.2);
}

TEST(LatencyModel, TrainingOptionsOutOfRangeAreNamed) {
  const auto samples = synthetic_samples(50, 2);
  auto message = [&](TrainOptions o) {
    try {
      LatencyModel::train(samples, o, nullptr);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  TrainOptions o;
  o.weight_decay = -1;
  EXPECT_NE(message(o).find("weight decay"), std::string::npos) << message(o);
  o.weight_decay = 1 / o.learning_rate;  // a step would flip every weight's sign
  EXPECT_NE(message(o).find("weight decay"), std::string::npos) << message(o);
  o = TrainOptions{};
  o.held_out_fraction = 1;
  EXPECT_NE(message(o).find("held-out"), std::string::npos) << message(o);
  o.held_out_fraction = 0.999;  // 49 of 50 held out: one left, still trains
  EXPECT_EQ(message(o), "accepted");
}

TEST(LatencyModel, SavesAndLoadsTheSamePredictions) {
  TrainOptions options;
  options.epochs = 5;
  const auto samples = synthetic_samples(200, 3);
  const auto model = LatencyModel::train(samples, options, nullptr);
  const auto path = (test::temp_dir() / "model.bin").string();
  model.save(path);
  const auto back = LatencyModel::load(path);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(model.predict_us(samples[i].x), back.predict_us(samples[i].x));
  test::write_bytes(path, "not a model");
  EXPECT_THROW(LatencyModel::load(path), Error);
}

// A latency model file whose weight vector claims 2^56 entries: refused as corrupt, never
// allocated (the sizes in the file are checked against its length).
TEST(LatencyModel, AClaimedSizeBeyondTheFileIsCorruptNotAllocated) {
  TrainOptions options;
  options.epochs = 1;
  const auto path = (test::temp_dir() / "model.bin").string();
  LatencyModel::train(synthetic_samples(50, 3), options, nullptr).save(path);
  std::string bytes = test::read_bytes(path);
  // The size tag of the first weights (hidden width x features, the default width 32).
  bool replaced = false;
  for (size_t at = 0; at + 8 <= bytes.size() && !replaced; ++at) {
    uint64_t size = 0;
    std::memcpy(&size, bytes.data() + at, 8);
    if (size == uint64_t(TrainOptions{}.hidden) * kLatencyFeatures) {
      const uint64_t huge = uint64_t(1) << 56;
      std::memcpy(bytes.data() + at, &huge, 8);
      replaced = true;
    }
  }
  ASSERT_TRUE(replaced) << "no weight vector size found in the file";
  test::write_bytes(path, bytes);
  try {
    LatencyModel::load(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt latency model: claims"), std::string::npos)
        << e.what();
  }
}

}  // namespace moe
