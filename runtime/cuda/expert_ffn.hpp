// The expert FFN on device rows, with weights already on the device: for every group,
// hidden = relu(x · wi^T), y = hidden · wo^T. Two ways to issue the GEMMs (ExpertGemm):
//  * grouped:   one cublasGemmGroupedBatchedEx for all wi products, one ReLU over every hidden
//               row, one grouped call for all wo products;
//  * per_group: per expert, GEMM → ReLU → GEMM as one chain, the chains spread round-robin over
//               `streams` side streams (each with its own cuBLAS handle) that fork from and join
//               back into the main stream, so small experts run side by side.
// Included only from .cu files.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "runtime/cuda/buffers.hpp"
#include "runtime/cuda/cuda_device.hpp"
#include "runtime/cuda/gemm.hpp"

namespace moe::gpu {

struct DeviceExpertGroup {
  const void* wi;  // [d_ff, d_model], float or bf16
  const void* wo;  // [d_model, d_ff]
  int first_row, rows;
};

// Row ranges [begin, end) that non-empty groups cover, sorted and merged: what is copied in and
// out. Overlapping groups are an error (two experts would write one row).
template <typename Group>
void covered_rows(const std::vector<Group>& groups, std::vector<std::pair<int, int>>& merged) {
  std::vector<std::pair<int, int>> ranges;
  for (const Group& g : groups)
    if (g.rows > 0) ranges.emplace_back(g.first_row, g.first_row + g.rows);
  std::sort(ranges.begin(), ranges.end());
  merged.clear();
  for (const auto& r : ranges) {
    MOE_CHECK(merged.empty() || r.first >= merged.back().second,
              "expert_ffn: expert groups overlap at row ", r.first);
    if (!merged.empty() && r.first == merged.back().second)
      merged.back().second = r.second;
    else
      merged.push_back(r);
  }
}

class ExpertFfnRunner {
 public:
  static constexpr int kMaxStreams = 8;

  ExpertFfnRunner(cudaStream_t stream, cublasHandle_t cublas) : stream_(stream), cublas_(cublas) {}
  ~ExpertFfnRunner();
  ExpertFfnRunner(const ExpertFfnRunner&) = delete;
  ExpertFfnRunner& operator=(const ExpertFfnRunner&) = delete;

  // Stream-ordered on the main stream; rows outside every group are neither read nor written.
  // Groups must not overlap; `path` is grouped or per_group (not automatic).
  void run(const std::vector<DeviceExpertGroup>& groups, const float* d_x, float* d_y, int d_model,
           int d_ff, bool use_bf16, ExpertGemm path, int streams);

 private:
  void make_side_streams(int count);

  cudaStream_t stream_;
  cublasHandle_t cublas_;
  DeviceBuffer x_bf16_, hidden_, y_bf16_;
  GroupedGemm grouped_;
  std::vector<GemmProblem> wi_problems_, wo_problems_;  // reused across calls
  std::vector<std::pair<int, int>> ranges_;
  std::vector<cudaStream_t> sides_;
  std::vector<cublasHandle_t> side_blas_;
  std::vector<cudaEvent_t> side_done_;
  cudaEvent_t forked_ = nullptr;
};

}  // namespace moe::gpu
