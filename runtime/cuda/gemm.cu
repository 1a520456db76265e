// cuBLAS calls for row-major, HF-layout GEMMs (see gemm.hpp for the layout arithmetic).
#include "runtime/cuda/gemm.hpp"

namespace moe::gpu {
namespace {

cudaDataType input_type(GemmTypes t) { return t == GemmTypes::f32 ? CUDA_R_32F : CUDA_R_16BF; }
cudaDataType output_type(GemmTypes t) {
  return t == GemmTypes::bf16_to_bf16 ? CUDA_R_16BF : CUDA_R_32F;
}

}  // namespace

void gemm(cublasHandle_t handle, GemmTypes types, const GemmProblem& p, float beta) {
  if (p.M == 0 || p.N == 0) return;
  const float alpha = 1.0f;
  if (types == GemmTypes::f32) {
    // Plain FP32 (the handle's default math mode: no TF32), as the CPU's sgemm.
    CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, p.N, p.M, p.K, &alpha,
                             static_cast<const float*>(p.w), p.K, static_cast<const float*>(p.x),
                             p.K, &beta, static_cast<float*>(p.y), p.N));
    return;
  }
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, p.N, p.M, p.K, &alpha, p.w,
                            input_type(types), p.K, p.x, input_type(types), p.K, &beta, p.y,
                            output_type(types), p.N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

bool grouped_gemm_available() {
#if CUBLAS_VERSION >= 120500
  return true;
#else
  return false;
#endif
}

GroupedGemm::~GroupedGemm() {
  if (uploaded_) cudaEventDestroy(uploaded_);
}

void GroupedGemm::run(cublasHandle_t handle, cudaStream_t stream, GemmTypes types,
                      const std::vector<GemmProblem>& problems) {
#if CUBLAS_VERSION >= 120500
  MOE_CHECK(types != GemmTypes::bf16_to_f32,
            "grouped GEMM: bf16 inputs with a float32 output are not a grouped cuBLAS type");
  m_.clear(), n_.clear(), k_.clear();
  for (const GemmProblem& p : problems)
    if (p.M > 0 && p.N > 0) m_.push_back(p.N), n_.push_back(p.M), k_.push_back(p.K);
  const int G = static_cast<int>(m_.size());
  if (G == 0) return;
  lda_ = k_, ldb_ = k_, ldc_ = m_;
  group_size_.assign(G, 1);
  op_w_.assign(G, CUBLAS_OP_T);
  op_x_.assign(G, CUBLAS_OP_N);
  alpha_.assign(G, 1.0f);
  beta_.assign(G, 0.0f);

  if (!uploaded_) CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventSynchronize(uploaded_));  // the previous call's arrays have been copied
  const void** host = pinned_.ensure<const void*>(3 * size_t(G));
  int g = 0;
  for (const GemmProblem& p : problems) {
    if (p.M == 0 || p.N == 0) continue;
    host[g] = p.w, host[G + g] = p.x, host[2 * G + g] = p.y;
    ++g;
  }
  void** dev = device_ptrs_.ensure<void*>(3 * size_t(G), stream);
  CUDA_CHECK(
      cudaMemcpyAsync(dev, host, 3 * size_t(G) * sizeof(void*), cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaEventRecord(uploaded_, stream));
  const cudaDataType in = input_type(types), out = output_type(types);
  CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
      handle, op_w_.data(), op_x_.data(), m_.data(), n_.data(), k_.data(), alpha_.data(),
      const_cast<const void* const*>(dev), in, lda_.data(), const_cast<const void* const*>(dev + G),
      in, ldb_.data(), beta_.data(), dev + 2 * G, out, ldc_.data(), G, group_size_.data(),
      CUBLAS_COMPUTE_32F));
#else
  MOE_FAIL("grouped GEMM: this cuBLAS (", CUBLAS_VERSION,
           ") has no cublasGemmGroupedBatchedEx; use ExpertGemm::per_group");
#endif
}

}  // namespace moe::gpu
