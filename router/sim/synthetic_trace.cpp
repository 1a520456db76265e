#include "router/sim/synthetic_trace.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "runtime/error.hpp"

namespace moe::sim {

std::vector<RoutingRecord> synthetic_trace(const SyntheticSpec& s) {
  MOE_CHECK(s.popularity == "balanced" || s.popularity == "skewed", "synthetic trace: popularity '",
            s.popularity, "' is neither balanced nor skewed");
  MOE_CHECK(s.layers >= 1 && s.experts >= 1 && s.batches >= 1 && s.sequences >= 1 &&
                s.tokens_per_call >= s.sequences && s.tokens_per_call % s.sequences == 0,
            "synthetic trace: need layers, experts, batches >= 1 and tokens per call a multiple of "
            "sequences");
  MOE_CHECK(s.zipf >= 0 && s.capacity_factor >= 0,
            "synthetic trace: zipf and capacity factor must be >= 0");
  std::mt19937_64 rng(s.seed);
  // Per layer: expert weights (a random order of popularity when skewed).
  std::vector<std::discrete_distribution<int>> pick;
  for (int l = 0; l < s.layers; ++l) {
    std::vector<int> order(s.experts);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<double> w(s.experts, 1.0);
    if (s.popularity == "skewed")
      for (int k = 0; k < s.experts; ++k) w[order[k]] = 1.0 / std::pow(k + 1, s.zipf);
    pick.emplace_back(w.begin(), w.end());
  }
  std::uniform_real_distribution<double> score(0.25, 1.0);
  const int seq_len = s.tokens_per_call / s.sequences;
  const int capacity = s.capacity_factor > 0
                           ? int(std::ceil(s.capacity_factor * seq_len / double(s.experts)))
                           : seq_len;
  std::vector<RoutingRecord> trace;
  std::vector<int> used(s.experts);
  for (int b = 0; b < s.batches; ++b)
    for (int l = 0; l < s.layers; ++l) {
      RoutingRecord r;
      r.batch = b;
      r.step = 0;
      r.layer = l;
      r.sequences = s.sequences;
      r.seq_len = seq_len;
      for (int q = 0; q < s.sequences; ++q) {
        std::fill(used.begin(), used.end(), 0);
        for (int t = 0; t < seq_len; ++t) {
          const int e = pick[l](rng);
          // Top-1 probability p; the rest spread evenly over the other experts.
          const double p = std::max(score(rng), 1.0 / s.experts);
          const double rest = s.experts > 1 ? (1 - p) / (s.experts - 1) : 0.0;
          const double entropy = -p * std::log(p) - (rest > 0 ? (1 - p) * std::log(rest) : 0.0);
          r.expert.push_back(e);
          r.probability.push_back(float(p));
          r.entropy.push_back(float(entropy));
          r.kept.push_back(++used[e] <= capacity);
        }
      }
      trace.push_back(std::move(r));
    }
  return trace;
}

}  // namespace moe::sim
