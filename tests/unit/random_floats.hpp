// Normally distributed floats (mean 0, deviation 1) from a fixed seed, for the kernel tests.
#pragma once

#include <random>
#include <vector>

namespace moe {

inline std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

}  // namespace moe
