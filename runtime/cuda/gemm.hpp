// Row-major GEMMs with Hugging Face weight layout, issued through cuBLAS: y[M, N] = x[M, K] ·
// w[N, K]^T. cuBLAS is column-major, so each call computes y^T = w · x^T, i.e. gemm(op_T, op_N,
// m=N, n=M, k=K) with leading dimensions K, K, N — no transposed copies.
// Included only from .cu files (cuBLAS types).
#pragma once

#include <cublas_v2.h>

#include <vector>

#include "runtime/cuda/buffers.hpp"

namespace moe::gpu {

// One product of a grouped call. Element types are the call's, pointers are DEVICE pointers.
struct GemmProblem {
  const void* w;  // [N, K]
  const void* x;  // [M, K]
  void* y;        // [M, N]
  int M, N, K;
};

// The element types of a call: float32 everywhere, or bf16 inputs with float32 accumulation and
// a bf16 or float32 output.
enum class GemmTypes { f32, bf16_to_bf16, bf16_to_f32 };

// One GEMM (beta = 0, or 1 to accumulate into y).
void gemm(cublasHandle_t handle, GemmTypes types, const GemmProblem& p, float beta);

// Whether this cuBLAS has cublasGemmGroupedBatchedEx (12.5 and later).
bool grouped_gemm_available();

// Every problem in one cublasGemmGroupedBatchedEx call (one group per problem, beta = 0).
// bf16_to_f32 is not a grouped type: callers use bf16_to_bf16 and convert.
// The pointer arrays go to the device through `pinned` and `device_ptrs`; `uploaded` is recorded
// after that copy and waited on before `pinned` is rewritten by the next call.
class GroupedGemm {
 public:
  void run(cublasHandle_t handle, cudaStream_t stream, GemmTypes types,
           const std::vector<GemmProblem>& problems);
  ~GroupedGemm();

 private:
  PinnedBuffer pinned_;
  DeviceBuffer device_ptrs_;
  cudaEvent_t uploaded_ = nullptr;
  std::vector<int> m_, n_, k_, lda_, ldb_, ldc_, group_size_;
  std::vector<cublasOperation_t> op_w_, op_x_;
  std::vector<float> alpha_, beta_;
};

}  // namespace moe::gpu
