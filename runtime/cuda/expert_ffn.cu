// The expert FFN's GEMM issue paths (see expert_ffn.hpp).
#include "runtime/cuda/expert_ffn.hpp"
#include "runtime/cuda/kernels.hpp"

namespace moe::gpu {

ExpertFfnRunner::~ExpertFfnRunner() {
  for (cublasHandle_t h : side_blas_) cublasDestroy(h);
  for (cudaEvent_t e : side_done_) cudaEventDestroy(e);
  for (cudaStream_t s : sides_) cudaStreamDestroy(s);
  if (forked_) cudaEventDestroy(forked_);
}

void ExpertFfnRunner::make_side_streams(int count) {
  if (!forked_) CUDA_CHECK(cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming));
  while (int(sides_.size()) < count) {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    sides_.push_back(s);
    cudaEvent_t done = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    side_done_.push_back(done);
    // One handle per stream: a handle's workspace must not be shared by concurrent GEMMs.
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, s));
    side_blas_.push_back(h);
  }
}

void ExpertFfnRunner::run(const std::vector<DeviceExpertGroup>& groups, const float* d_x,
                          float* d_y, int d_model, int d_ff, bool use_bf16, ExpertGemm path,
                          int streams) {
  MOE_CHECK(d_model > 0 && d_ff > 0, "expert_ffn: bad d_model ", d_model, " d_ff ", d_ff);
  MOE_CHECK(path == ExpertGemm::grouped || path == ExpertGemm::per_group,
            "expert_ffn: the GEMM path must be resolved before running");
  MOE_CHECK(streams >= 1 && streams <= kMaxStreams, "expert_ffn: streams must be 1..", kMaxStreams,
            ", got ", streams);
  size_t total_rows = 0;
  for (const DeviceExpertGroup& g : groups) {
    MOE_CHECK(g.rows >= 0 && g.first_row >= 0, "expert_ffn: bad group (first_row ", g.first_row,
              ", rows ", g.rows, ")");
    total_rows += size_t(g.rows);
  }
  if (total_rows == 0) return;
  covered_rows(groups, ranges_);
  const size_t row_end = size_t(ranges_.back().second);
  const size_t elt = use_bf16 ? sizeof(bf16) : sizeof(float);
  char* hidden = hidden_.ensure<char>(total_rows * d_ff * elt, stream_);

  // GEMM inputs in the GEMM's type: float32 rows as given, or bf16 copies at the same rows.
  const char* x = reinterpret_cast<const char*>(d_x);
  if (use_bf16) {
    bf16* x16 = x_bf16_.ensure<bf16>(row_end * d_model, stream_);
    for (const auto& [begin, end] : ranges_)
      convert(d_x + size_t(begin) * d_model, x16 + size_t(begin) * d_model,
              size_t(end - begin) * d_model, stream_);
    x = reinterpret_cast<const char*>(x16);
  }
  // Grouped bf16 GEMMs write bf16 (there is no mixed grouped type), converted at the end.
  const bool bf16_staged_y = use_bf16 && path == ExpertGemm::grouped;
  char* y = bf16_staged_y ? y_bf16_.ensure<char>(row_end * d_model * sizeof(bf16), stream_)
                          : reinterpret_cast<char*>(d_y);
  const size_t y_elt = bf16_staged_y ? sizeof(bf16) : sizeof(float);

  wi_problems_.clear();
  wo_problems_.clear();
  size_t hidden_row = 0;
  for (const DeviceExpertGroup& g : groups) {
    if (g.rows == 0) continue;
    char* h = hidden + hidden_row * d_ff * elt;
    wi_problems_.push_back(
        {g.wi, x + size_t(g.first_row) * d_model * elt, h, g.rows, d_ff, d_model});
    wo_problems_.push_back(
        {g.wo, h, y + size_t(g.first_row) * d_model * y_elt, g.rows, d_model, d_ff});
    hidden_row += size_t(g.rows);
  }
  const GemmTypes in_types = use_bf16 ? GemmTypes::bf16_to_bf16 : GemmTypes::f32;
  auto relu = [&](void* h, size_t n, cudaStream_t s) {
    if (use_bf16)
      relu_inplace(static_cast<bf16*>(h), n, s);
    else
      relu_inplace(static_cast<float*>(h), n, s);
  };

  if (path == ExpertGemm::grouped) {
    grouped_.run(cublas_, stream_, in_types, wi_problems_);
    relu(hidden, total_rows * d_ff, stream_);
    grouped_.run(cublas_, stream_, in_types, wo_problems_);
    if (bf16_staged_y)
      for (const auto& [begin, end] : ranges_)
        convert(reinterpret_cast<const bf16*>(y) + size_t(begin) * d_model,
                d_y + size_t(begin) * d_model, size_t(end - begin) * d_model, stream_);
    return;
  }

  const GemmTypes out_types = use_bf16 ? GemmTypes::bf16_to_f32 : GemmTypes::f32;
  const int used = std::min<int>(streams, int(wi_problems_.size()));
  if (used > 1) {
    make_side_streams(used);
    CUDA_CHECK(cudaEventRecord(forked_, stream_));
    for (int s = 0; s < used; ++s) CUDA_CHECK(cudaStreamWaitEvent(sides_[s], forked_, 0));
  }
  for (size_t i = 0; i < wi_problems_.size(); ++i) {
    const bool side = used > 1;
    cudaStream_t s = side ? sides_[i % used] : stream_;
    cublasHandle_t h = side ? side_blas_[i % used] : cublas_;
    const GemmProblem& wi = wi_problems_[i];
    gemm(h, in_types, wi, 0.0f);
    relu(wi.y, size_t(wi.M) * d_ff, s);
    gemm(h, out_types, wo_problems_[i], 0.0f);
  }
  if (used > 1)
    for (int s = 0; s < used; ++s) {
      CUDA_CHECK(cudaEventRecord(side_done_[s], sides_[s]));
      CUDA_CHECK(cudaStreamWaitEvent(stream_, side_done_[s], 0));
    }
}

}  // namespace moe::gpu
