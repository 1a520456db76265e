#include "model/layers.hpp"

#include <cmath>
#include <cstring>

#include "runtime/thread_pool.hpp"

namespace moe {

void rms_norm(const float* x, const float* weight, float eps, int T, int d, float* out) {
  parallel_for(T, [&](int first, int last) {
    for (int t = first; t < last; ++t) {
      const float* row = x + size_t(t) * d;
      double sum_sq = 0.0;
      for (int i = 0; i < d; ++i) sum_sq += double(row[i]) * row[i];
      const float scale = 1.0f / std::sqrt(float(sum_sq / d) + eps);
      float* o = out + size_t(t) * d;
      for (int i = 0; i < d; ++i) o[i] = weight[i] * (row[i] * scale);
    }
  });
}

void embed(const float* table, const std::vector<int>& ids, int d, float* out) {
  for (size_t t = 0; t < ids.size(); ++t)
    std::memcpy(out + t * d, table + size_t(ids[t]) * d, sizeof(float) * d);
}

void add_inplace(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace moe
