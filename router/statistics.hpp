// The statistics every table of the project uses, defined once: the profiler's medians, the
// percentiles and imbalance of bench-routing and the simulator, and paired comparisons.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace moe {

// The middle value; the mean of the middle two for an even count (0 when empty).
double median(std::vector<double> values);

// The value at rank floor(q * n) of the sorted values (0 when empty).
double percentile(std::vector<double> values, double q);

// Quantiles of a stream of values in constant memory, for runs too long to keep every value:
// counts in logarithmic buckets 0.1% wide from 1e-3 to 1e7 (values outside are clamped to the
// ends, values <= 0 counted as 0), so a quantile lies within 0.05% of percentile()'s value.
class StreamQuantiles {
 public:
  StreamQuantiles();
  void add(double value);
  int64_t count() const { return count_; }
  // As percentile(values, q) over every value added (0 when none was).
  double quantile(double q) const;

 private:
  std::vector<int64_t> buckets_;  // [0]: values <= 0; then one per 0.1% step from 1e-3
  int64_t count_ = 0;
};

// max/mean of values[first..end) (0 when they are all zero).
double max_over_mean(const std::vector<double>& values, int first, int end);

// Change of `a` against `b` in mean over the same items, with the standard error of the paired
// differences, both as fractions of b's mean ({0, 0} with fewer than two pairs).
std::pair<double, double> paired_change(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace moe
