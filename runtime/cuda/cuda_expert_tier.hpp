// The GPU's expert tier (runtime/expert_tier.hpp): device memory for the committee, backed by the
// experts' host copies, registered for DMA so that a swap is a copy on the device's copy stream.
#pragma once

#include <memory>
#include <vector>

#include "runtime/cuda/cuda_device.hpp"
#include "runtime/expert_tier.hpp"

namespace moe {

// Pins the host pages of `experts` (whole pages, overlapping ranges merged: two tensors may share
// one) for the tier's lifetime; where the system refuses, says so once and copies from pageable
// memory.
std::unique_ptr<ExpertTier> make_cuda_expert_tier(CudaDevice& device, int d_model, int d_ff,
                                                  const std::vector<ExpertWeights>& experts);

// [begin, end) host ranges, page-aligned outward, sorted, overlapping or touching ones merged.
std::vector<std::pair<uintptr_t, uintptr_t>> merged_page_ranges(
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges, size_t page);

}  // namespace moe
