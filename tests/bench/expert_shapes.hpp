// The shapes both expert-FFN benchmarks time (bench_expert_gemm on the CPU, bench_cuda_expert_gemm
// on the GPU): switch-base-8's expert (d_model 768, d_ff 3072), 8 experts, the tokens per expert of
// each benchmark's sweep, and how those tokens spread over the experts. Plain C++ (nvcc too).
#pragma once

#include <array>
#include <vector>

namespace moe::expert_shapes {

inline constexpr int kDModel = 768, kDff = 3072, kExperts = 8;

// Tokens per expert in each sweep, ascending; the last is the most a buffer must hold.
inline constexpr std::array<int, 5> kCpuTokensPerExpert = {1, 3, 8, 64, 256};
inline constexpr std::array<int, 5> kCudaTokensPerExpert = {16, 64, 256, 1024, 4096};

// Tokens per expert: balanced, or skewed (Zipf, expert e gets ∝ 1/(e+1); same total).
inline std::vector<int> token_counts(int per_expert, bool skewed) {
  std::vector<int> counts(kExperts, per_expert);
  if (!skewed) return counts;
  const int total = per_expert * kExperts;
  double norm = 0;
  for (int e = 0; e < kExperts; ++e) norm += 1.0 / (e + 1);
  int assigned = 0;
  for (int e = 0; e < kExperts; ++e) assigned += counts[e] = int(total / norm / (e + 1));
  counts[0] += total - assigned;
  return counts;
}

}  // namespace moe::expert_shapes
