// The CPU device: skinny_gemm for the few rows of decode, OpenBLAS sgemm for more.
#pragma once

#include <vector>

#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/device.hpp"

namespace moe {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads);
  std::string name() const override;
  void linear(const float* x, const float* w, float* y, int M, int N, int K,
              bool accumulate) override;
  void expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y, int d_model,
                  int d_ff) override;

 private:
  void sgemm(const float* x, const float* w, float* y, int M, int N, int K, bool accumulate);

  int threads_;
  SimdLevel simd_;
  std::vector<float> hidden_;  // [rows, d_ff] of the largest group seen, reused across calls
  std::vector<float> padded_in_, padded_out_;  // a group's rows padded to a multiple of 4
};

}  // namespace moe
