#include "runtime/cuda/cuda_expert_tier.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace moe {

std::vector<std::pair<uintptr_t, uintptr_t>> merged_page_ranges(
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges, size_t page) {
  for (auto& [begin, end] : ranges) {
    begin -= begin % page;
    end += (page - end % page) % page;
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uintptr_t, uintptr_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second)
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  }
  return merged;
}

namespace {

class CudaExpertTier final : public ExpertTier {
 public:
  CudaExpertTier(CudaDevice& device, int d_model, int d_ff,
                 const std::vector<ExpertWeights>& experts)
      : device_(device), d_model_(d_model), d_ff_(d_ff) {
    const size_t bytes = size_t(d_model) * d_ff * sizeof(float);
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    for (const ExpertWeights& e : experts)
      for (const float* p : {e.wi, e.wo})
        if (p != nullptr) ranges.push_back({uintptr_t(p), uintptr_t(p) + bytes});
    size_t refused = 0;
    for (const auto& [begin, end] : merged_page_ranges(std::move(ranges), size_t(getpagesize()))) {
      if (device_.pin_host_range(reinterpret_cast<const void*>(begin), end - begin))
        pinned_.push_back(reinterpret_cast<const void*>(begin));
      else
        ++refused;
    }
    if (refused > 0)
      std::fprintf(stderr,
                   "%s: %zu of %zu host ranges of the experts could not be pinned; their copies to "
                   "the device go through the driver's staging\n",
                   device_.name().c_str(), refused, refused + pinned_.size());
  }
  ~CudaExpertTier() override {
    for (const void* p : pinned_) {
      try {
        device_.unpin_host_range(p);
      } catch (...) {  // a destructor: the process is ending or unwinding already
      }
    }
  }
  std::string name() const override {
    return device_.name() + " memory backed by pinned host memory";
  }
  std::string measure() const override { return "device memory in use"; }
  void bring_in(const ExpertWeights& expert) override {
    device_.upload_expert_async(expert, d_model_, d_ff_, /*wait=*/true);
  }
  void send_back(const ExpertWeights& expert) override { device_.drop_expert(expert); }
  uint64_t resident_bytes() const override { return device_.device_memory_used(); }

 private:
  CudaDevice& device_;
  int d_model_, d_ff_;
  std::vector<const void*> pinned_;
};

}  // namespace

std::unique_ptr<ExpertTier> make_cuda_expert_tier(CudaDevice& device, int d_model, int d_ff,
                                                  const std::vector<ExpertWeights>& experts) {
  return std::make_unique<CudaExpertTier>(device, d_model, d_ff, experts);
}

}  // namespace moe
