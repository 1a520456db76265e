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
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, accumulate ? 1.0f : 0.0f, y,
                1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K,
              accumulate ? 1.0f : 0.0f, y, N);
}

// The kernel per expert group. sgemm packs (copies) the whole weight matrix on every call and
// handles rows past a multiple of 4 in slower tail passes; sgemv reads each weight once and packs
// nothing, so it wins for a row or two and loses from about four. Hence: up to kRowsByMatVec rows
// one sgemv pair per row, else sgemm — on one thread over the rows padded with zero rows to a
// multiple of 4, which avoids the tail passes (a zero row stays zero through ReLU; its outputs are
// dropped). On two threads OpenBLAS splits small sgemms so that the padded rows cost more than the
// tail passes they avoid, so there the rows go unpadded. Figures: docs/BENCHMARKS.md, section 1.
constexpr int kRowsByMatVec = 2;
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
    if (g.rows <= kRowsByMatVec) {
      for (int r = 0; r < g.rows; ++r) {
        float* h = hidden_.data() + size_t(r) * d_ff;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d_ff, d_model, 1.0f, g.weights.wi, d_model,
                    xg + size_t(r) * d_model, 1, 0.0f, h, 1);
        for (int i = 0; i < d_ff; ++i) h[i] = std::max(h[i], 0.0f);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d_model, d_ff, 1.0f, g.weights.wo, d_ff, h, 1,
                    0.0f, yg + size_t(r) * d_model, 1);
      }
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
