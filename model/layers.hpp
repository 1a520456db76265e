// Small per-row operations of the T5/Switch architecture.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe {

// out[T, d] = weight ⊙ x / sqrt(mean(x²) + eps), the T5 RMS norm (no mean, no bias).
void rms_norm(const float* x, const float* weight, float eps, int T, int d, float* out);

// out[T, d] = table[ids[t]]; every id must be < vocab (checked where ids enter).
void embed(const float* table, const std::vector<int>& ids, int d, float* out);

// x += y, elementwise over n values.
void add_inplace(float* x, const float* y, size_t n);

}  // namespace moe
