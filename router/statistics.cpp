#include "router/statistics.hpp"

#include <algorithm>
#include <cmath>

namespace moe {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, size_t(q * double(values.size())))];
}

namespace {
constexpr double kLowest = 1e-3, kHighest = 1e7, kStep = 1.001;
const double kLogStep = std::log(kStep);
const int kBuckets = int(std::ceil(std::log(kHighest / kLowest) / kLogStep)) + 1;
}  // namespace

StreamQuantiles::StreamQuantiles() : buckets_(size_t(kBuckets) + 1, 0) {}

void StreamQuantiles::add(double value) {
  size_t b = 0;
  if (value > 0) {
    const double steps = std::log(std::clamp(value, kLowest, kHighest) / kLowest) / kLogStep;
    b = 1 + std::min(size_t(kBuckets - 1), size_t(std::max(0.0, std::floor(steps))));
  }
  ++buckets_[b];
  ++count_;
}

double StreamQuantiles::quantile(double q) const {
  if (count_ == 0) return 0;
  const int64_t rank = std::min(count_ - 1, int64_t(q * double(count_)));
  int64_t seen = 0;
  size_t b = 0;
  while ((seen += buckets_[b]) <= rank) ++b;
  if (b == 0) return 0;
  // The bucket's geometric middle: at most half a step from any value in it.
  return kLowest * std::exp((double(b - 1) + 0.5) * kLogStep);
}

double max_over_mean(const std::vector<double>& values, int first, int end) {
  double most = 0, sum = 0;
  for (int i = first; i < end; ++i) {
    most = std::max(most, values[i]);
    sum += values[i];
  }
  return sum > 0 ? most / (sum / (end - first)) : 0.0;
}

std::pair<double, double> paired_change(const std::vector<double>& a,
                                        const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return {0, 0};
  double base = 0, diff = 0;
  for (size_t i = 0; i < n; ++i) {
    base += b[i];
    diff += a[i] - b[i];
  }
  const double mean_diff = diff / double(n);
  double var = 0;
  for (size_t i = 0; i < n; ++i) var += std::pow(a[i] - b[i] - mean_diff, 2);
  const double se = std::sqrt(var / double(n - 1) / double(n));
  return {diff / base, se / (base / double(n))};
}

}  // namespace moe
