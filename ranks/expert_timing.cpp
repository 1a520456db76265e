#include "ranks/expert_timing.hpp"

#include <algorithm>
#include <fstream>
#include <random>

#include "router/statistics.hpp"
#include "runtime/error.hpp"
#include "runtime/rank_stats.hpp"

namespace moe {
ProfileResult time_experts(const ProfileRequest& request,
                           const std::vector<const SparseFfnWeights*>& layers, Device& device,
                           const ModelConfig& c, int rank, const std::string& device_spec) {
  std::vector<ExpertWeights> experts;
  for (const auto* layer : layers)
    for (int e = 0; e < c.num_experts; ++e)
      if (layer->resident(e) &&
          (request.max_experts == 0 || int(experts.size()) < request.max_experts))
        experts.push_back(layer->expert(e));
  MOE_CHECK(!experts.empty(), "rank ", rank, " holds no experts to profile");
  int most = 1;
  for (int n : request.token_counts) most = std::max(most, n);
  std::vector<float> x(size_t(most) * c.d_model), y(x.size());
  std::mt19937 rng(rank);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& v : x) v = normal(rng);
  ProfileResult result;
  result.rank = rank;
  result.device = device_spec;
  result.memory_bytes = available_memory_bytes();
  // Where the rotation starts is part of the request, so that ranks timed at once can run the
  // same or different experts.
  const size_t k = experts.size();
  const size_t first = request.rotation_parts > 0 ? k * size_t(std::max(request.rotation_part, 0)) /
                                                        size_t(request.rotation_parts) % k
                                                  : 0;
  for (int n : request.token_counts) {
    if (request.warm_up)
      for (const auto& w : experts)
        device.expert_ffn({{w, 0, n}}, x.data(), y.data(), c.d_model, c.d_ff);
    std::vector<double> times, cpu_times;
    for (size_t i = 0; i < k; ++i) {
      const ExpertWeights& w = experts[(first + i) % k];
      const double start = now_us(), cpu_start = process_cpu_us();
      device.expert_ffn({{w, 0, n}}, x.data(), y.data(), c.d_model, c.d_ff);
      times.push_back(now_us() - start);
      cpu_times.push_back(process_cpu_us() - cpu_start);
    }
    result.median_us.push_back(median(times));
    result.cpu_median_us.push_back(median(cpu_times));
  }
  return result;
}

}  // namespace moe
