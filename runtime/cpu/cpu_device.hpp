// The CPU device: float32 weights in panels (panel_gemm, every row count); the compact formats by
// their dot-product kernels, skinny_gemm for the few rows of decode and oneDNN's sgemm for more.
#pragma once

#include <map>
#include <vector>

#include "runtime/cpu/bf16_gemm.hpp"
#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/device.hpp"

namespace moe {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads, WeightFormat format = WeightFormat::kF32);
  std::string name() const override;
  void linear(const float* x, const float* w, float* y, int M, int N, int K,
              bool accumulate) override;
  void expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y, int d_model,
                  int d_ff) override;
  void prepare_weight(const float* w, int rows, int cols) override;
  size_t prepared_weight_bytes() const override { return prepared_bytes_; }

 private:
  struct Prepared {
    StoredWeight stored;
    int cols;
  };
  // The prepared copy of rows [w, w + N) (K columns) when there is one, else w as float32.
  WeightMatrix weights_at(const float* w, int N, int K) const;
  void product(const float* x, const WeightMatrix& w, float* y, int M, int N, int K,
               bool accumulate, bool relu, bool parallel = true);
  void sgemm(const float* x, const WeightMatrix& w, float* y, int M, int N, int K, bool accumulate);
  void few_row_groups_by_columns(const float* x, float* y, int d_model, int d_ff);

  int threads_;
  WeightFormat format_;
  SimdLevel simd_;
  std::map<const float*, Prepared> prepared_;  // by the float32 matrix's first element
  size_t prepared_bytes_ = 0;
  std::vector<float> hidden_;  // [rows, d_ff] of the largest group seen, reused across calls
  QuantizedRows quantized_;    // the int8 kernel's activations, reused across calls
  Bf16Rows rounded_;           // the bf16 kernel's activations, reused across calls
  std::vector<const ExpertGroup*> small_groups_;  // expert_ffn's groups that run whole per thread
};

}  // namespace moe
