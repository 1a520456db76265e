// The statistics every table of the project uses, defined once: the profiler's medians, the
// percentiles and imbalance of bench-routing and the simulator, and paired comparisons.
#pragma once

#include <utility>
#include <vector>

namespace moe {

// The middle value; the mean of the middle two for an even count (0 when empty).
double median(std::vector<double> values);

// The value at rank floor(q * n) of the sorted values (0 when empty).
double percentile(std::vector<double> values, double q);

// max/mean of values[first..end) (0 when they are all zero).
double max_over_mean(const std::vector<double>& values, int first, int end);

// Change of `a` against `b` in mean over the same items, with the standard error of the paired
// differences, both as fractions of b's mean ({0, 0} with fewer than two pairs).
std::pair<double, double> paired_change(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace moe
