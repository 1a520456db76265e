#include "runtime/expert_tier.hpp"

#include "runtime/mapped_pages.hpp"
#include "runtime/rank_stats.hpp"
#ifdef MOE_WITH_CUDA
#include "runtime/cuda/cuda_device.hpp"
#include "runtime/cuda/cuda_expert_tier.hpp"
#endif

namespace moe {
namespace {

// RAM backed by the mapped checkpoint: an expert's pages mapped in, or given back to the kernel.
class MappedPagesTier final : public ExpertTier {
 public:
  MappedPagesTier(int d_model, int d_ff) : bytes_(size_t(d_model) * d_ff * sizeof(float)) {}
  std::string name() const override { return "RAM backed by the checkpoint on disk"; }
  std::string measure() const override { return "resident memory"; }
  void bring_in(const ExpertWeights& expert) override {
    map_in_pages(expert.wi, bytes_);
    map_in_pages(expert.wo, bytes_);
  }
  void send_back(const ExpertWeights& expert) override {
    give_back_pages(expert.wi, bytes_);
    give_back_pages(expert.wo, bytes_);
  }
  uint64_t resident_bytes() const override { return moe::resident_bytes(); }

 private:
  size_t bytes_;  // of wi, and of wo
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
