// The latency predictor: a small MLP (8 features → 32 → 32 → 1, ReLU) predicting the log of a
// rank's completion time for a sparse-layer call, trained in C++ with Adam on MSE of log-latency.
// The MLP learns the correction to the profile table: log(latency) = log(profiled + transport
// cost) + MLP(features), so where the samples are thin (an assignment no baseline made) the
// prediction falls back to the measured profile instead of extrapolating freely.
// Features (all ≥ 0; the model applies log1p and standardises them):
//   0 router score     mean top-1 probability of the group's tokens
//   1 router entropy   mean router entropy of the group's tokens
//   2 group tokens     tokens of this expert in the group
//   3 rank tokens      tokens already assigned to the rank in this layer
//   4 rank latency     the rank's recent measured latency (moving average of replies, µs)
//   5 in-flight        the rank's recent queueing before compute (moving average, µs)
//   6 profiled cost    profiled expert time of everything the rank would run (µs)
//   7 transport cost   profiled link time for everything the rank would receive and return (µs)
#pragma once

#include <array>
#include <cereal/types/array.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

constexpr int kLatencyFeatures = 8;
using LatencyFeatures = std::array<double, kLatencyFeatures>;

struct LatencySample {
  LatencyFeatures x{};
  double latency_us = 0;
};

struct TrainOptions {
  int hidden = 32;
  int epochs = 200;
  int batch = 64;
  double learning_rate = 3e-3;
  // Decoupled (AdamW) on the weights, not the biases: without it the MLP fits the noise of
  // features that barely matter (a rank's queueing of a few µs) with steep wiggles that then
  // decide between ranks of equal load.
  double weight_decay = 0.1;
  double held_out_fraction = 0.2;
  uint64_t seed = 1;
};

// Held-out error of the MLP, a linear model on the same features, and the profile table alone.
struct TrainReport {
  size_t train_samples = 0, held_out_samples = 0;
  double mlp_mape = 0, linear_mape = 0, profile_mape = 0;  // mean |pred - y| / y
  double final_train_loss = 0;
};

class LatencyModel {
 public:
  // 2: the MLP is a residual over the profile table; 3: inputs clamped to the training range
  static constexpr uint32_t kVersion = 3;
  static constexpr int kMaxHidden = 256;
  static LatencyModel train(const std::vector<LatencySample>& samples, const TrainOptions& options,
                            TrainReport* report);
  double predict_us(const LatencyFeatures& x) const;
  bool empty() const { return w1_.empty(); }

  void save(const std::string& path) const;
  static LatencyModel load(const std::string& path);

  template <class A>
  void serialize(A& ar) {
    ar(hidden_, mean_, stddev_, lo_, hi_, w1_, b1_, w2_, b2_, w3_, b3_);
  }

 private:
  friend struct MlpTrainer;
  LatencyFeatures normalise(const LatencyFeatures& x) const;
  // log of the profile table's estimate (profiled + transport cost), the MLP's starting point.
  static double table_log_us(const LatencyFeatures& x);
  // The MLP on normalised features; h1[hidden], h2[hidden] receive the hidden activations.
  double forward(const LatencyFeatures& z, double* h1, double* h2) const;
  int hidden_ = 0;
  LatencyFeatures mean_{}, stddev_{};
  // Range of each standardised feature on the training split: inputs are clamped to it, so a
  // feature outside what was seen (another machine's queueing, a simulated one) cannot extrapolate.
  LatencyFeatures lo_{}, hi_{};
  std::vector<double> w1_, b1_, w2_, b2_, w3_;  // w1[h][f], w2[h][h], w3[h]
  double b3_ = 0;
};

// Mean absolute percentage error of predictions against targets.
double mean_abs_percentage_error(const std::vector<double>& predicted,
                                 const std::vector<double>& actual);

// Samples as CSV: 8 feature columns then latency_us, with a header line.
std::vector<LatencySample> load_latency_samples(const std::string& path);
std::string latency_samples_header();
std::string latency_sample_line(const LatencySample& s);

}  // namespace moe
