#include "runtime/cpu/cpu_device.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <string>

#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/error.hpp"

extern "C" void openblas_set_num_threads(int);

namespace moe {

// Up to how many rows skinny_gemm beats OpenBLAS's sgemm for a product over K: it reads each
// weight once and packs nothing, so it wins while the weights' bandwidth bounds the call; sgemm's
// packed kernel wins once the rows make it compute-bound, and sooner for long rows (K = 3072: x's
// rows no longer stay in the first-level cache). Crossovers measured by bench_skinny_gemm on one
// thread (docs/BENCHMARKS.md, section 5).
int skinny_max_rows(SimdLevel level, int K) {
  switch (level) {
    case SimdLevel::kAvx512:
      return K <= 1024 ? 32 : 16;
    case SimdLevel::kAvx2:
      return 8;
    case SimdLevel::kBaseline:
      return 4;
  }
  return 0;
}

CpuDevice::CpuDevice(int threads) : threads_(threads), simd_(best_simd_level()) {
  MOE_CHECK(threads >= 1, "cpu device: thread count must be >= 1, got ", threads);
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
}

std::string CpuDevice::name() const { return "cpu:" + std::to_string(threads_); }

void CpuDevice::linear(const float* x, const float* w, float* y, int M, int N, int K,
                       bool accumulate) {
  if (M == 0 || N == 0) return;
  if (M <= skinny_max_rows(simd_, K))
    return skinny_gemm(simd_, x, w, y, M, N, K, accumulate, /*relu=*/false, threads_);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K,
              accumulate ? 1.0f : 0.0f, y, N);
}

// The kernel per expert group: few rows by skinny_gemm (ReLU fused into the first product);
// more by sgemm — on one thread over the rows padded with zero rows to a multiple of 4, which
// avoids OpenBLAS's slower tail passes (a zero row stays zero through ReLU; its outputs are
// dropped). On two threads OpenBLAS splits small sgemms so that the padded rows cost more than the
// tail passes they avoid, so there the rows go unpadded. Figures: docs/BENCHMARKS.md, section 1.
constexpr int kRowMultiple = 4;
int padded_rows(int rows) { return (rows + kRowMultiple - 1) / kRowMultiple * kRowMultiple; }

void CpuDevice::expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                           int d_model, int d_ff) {
  int max_rows = 0;
  for (const auto& g : groups) max_rows = std::max(max_rows, g.rows);
  const size_t hidden_floats = size_t(padded_rows(max_rows)) * d_ff;
  if (hidden_.size() < hidden_floats) hidden_.resize(hidden_floats);
  for (const auto& g : groups) {
    if (g.rows == 0) continue;
    const float* xg = x + size_t(g.first_row) * d_model;
    float* yg = y + size_t(g.first_row) * d_model;
    if (g.rows <= std::min(skinny_max_rows(simd_, d_model), skinny_max_rows(simd_, d_ff))) {
      skinny_gemm(simd_, xg, g.weights.wi, hidden_.data(), g.rows, d_ff, d_model, false,
                  /*relu=*/true, threads_);
      skinny_gemm(simd_, hidden_.data(), g.weights.wo, yg, g.rows, d_model, d_ff, false,
                  /*relu=*/false, threads_);
      continue;
    }
    const int M = threads_ == 1 ? padded_rows(g.rows) : g.rows;
    if (M != g.rows) {  // the group's rows and zero rows in a padded copy
      padded_in_.assign(size_t(M) * d_model, 0.0f);
      std::copy(xg, xg + size_t(g.rows) * d_model, padded_in_.begin());
      padded_out_.resize(size_t(M) * d_model);
      xg = padded_in_.data();
    }
    float* out = M != g.rows ? padded_out_.data() : yg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, d_ff, d_model, 1.0f, xg, d_model,
                g.weights.wi, d_model, 0.0f, hidden_.data(), d_ff);
    const size_t n = size_t(M) * d_ff;
    for (size_t i = 0; i < n; ++i) hidden_[i] = std::max(hidden_[i], 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, d_model, d_ff, 1.0f, hidden_.data(),
                d_ff, g.weights.wo, d_ff, 0.0f, out, d_model);
    if (M != g.rows) std::copy(out, out + size_t(g.rows) * d_model, yg);
  }
}

}  // namespace moe
