#include "runtime/expert_tier.hpp"

#include "runtime/mapped_pages.hpp"
#include "runtime/rank_stats.hpp"
#ifdef MOE_WITH_CUDA
#include "runtime/cuda/cuda_device.hpp"
#include "runtime/cuda/cuda_expert_tier.hpp"
#endif

namespace moe {

void map_in_expert_pages(const ExpertWeights& expert, int d_model, int d_ff) {
  const size_t bytes = size_t(d_model) * d_ff * sizeof(float);
  map_in_pages(expert.wi, bytes);
  map_in_pages(expert.wo, bytes);
}

void give_back_expert_pages(const ExpertWeights& expert, int d_model, int d_ff) {
  const size_t bytes = size_t(d_model) * d_ff * sizeof(float);
  give_back_pages(expert.wi, bytes);
  give_back_pages(expert.wo, bytes);
}

namespace {

// RAM backed by the mapped checkpoint: an expert's pages mapped in, or given back to the kernel.
class MappedPagesTier final : public ExpertTier {
 public:
  MappedPagesTier(int d_model, int d_ff) : d_model_(d_model), d_ff_(d_ff) {}
  std::string name() const override { return "RAM backed by the checkpoint on disk"; }
  std::string measure() const override { return "resident memory"; }
  void bring_in(const ExpertWeights& expert) override {
    map_in_expert_pages(expert, d_model_, d_ff_);
  }
  void send_back(const ExpertWeights& expert) override {
    give_back_expert_pages(expert, d_model_, d_ff_);
  }
  uint64_t resident_bytes() const override { return moe::resident_bytes(); }

 private:
  int d_model_, d_ff_;
};

}  // namespace

std::unique_ptr<ExpertTier> make_expert_tier(Device& device, int d_model, int d_ff,
                                             const std::vector<ExpertWeights>& experts) {
#ifdef MOE_WITH_CUDA
  if (auto* cuda = dynamic_cast<CudaDevice*>(&device))
    return make_cuda_expert_tier(*cuda, d_model, d_ff, experts);
#endif
  (void)experts;
  (void)device;
  return std::make_unique<MappedPagesTier>(d_model, d_ff);
}

}  // namespace moe
