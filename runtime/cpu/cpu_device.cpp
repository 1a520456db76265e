#include "runtime/cpu/cpu_device.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <string>

#include "runtime/error.hpp"

extern "C" void openblas_set_num_threads(int);

namespace moe {

CpuDevice::CpuDevice(int threads) : threads_(threads) {
  MOE_CHECK(threads >= 1, "cpu device: thread count must be >= 1, got ", threads);
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
}

std::string CpuDevice::name() const { return "cpu:" + std::to_string(threads_); }

void CpuDevice::linear(const float* x, const float* w, float* y, int M, int N, int K,
                       bool accumulate) {
  if (M == 0 || N == 0) return;
  if (M == 1) {  // one row: sgemv reads each weight once; sgemm would first copy (pack) them all
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, accumulate ? 1.0f : 0.0f, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K,
              accumulate ? 1.0f : 0.0f, y, N);
}

void CpuDevice::expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                           int d_model, int d_ff) {
  int max_rows = 0;
  for (const auto& g : groups) max_rows = std::max(max_rows, g.rows);
  if (hidden_.size() < static_cast<size_t>(max_rows) * d_ff) hidden_.resize(size_t(max_rows) * d_ff);
  for (const auto& g : groups) {
    if (g.rows == 0) continue;
    const float* xg = x + size_t(g.first_row) * d_model;
    float* yg = y + size_t(g.first_row) * d_model;
    // Always sgemm here: a row's result must not depend on how many rows share its expert, or
    // splitting an expert's tokens across replicas would change the model's output.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.rows, d_ff, d_model, 1.0f, xg, d_model,
                g.weights.wi, d_model, 0.0f, hidden_.data(), d_ff);
    const size_t n = size_t(g.rows) * d_ff;
    for (size_t i = 0; i < n; ++i) hidden_[i] = std::max(hidden_[i], 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.rows, d_model, d_ff, 1.0f,
                hidden_.data(), d_ff, g.weights.wo, d_ff, 0.0f, yg, d_model);
  }
}

}  // namespace moe
