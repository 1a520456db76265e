#include "runtime/cpu/cpu_device.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "runtime/cpu/sgemm.hpp"
#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/error.hpp"
#include "runtime/thread_pool.hpp"

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

CpuDevice::CpuDevice(int threads, WeightFormat format)
    : threads_(threads), format_(format), simd_(best_simd_level()) {
  MOE_CHECK(threads >= 1, "cpu device: thread count must be >= 1, got ", threads);
  ThreadPool::instance().resize(threads);
}

namespace {

// The float32 original of a converted matrix is not read again: its whole pages go back to the
// kernel, so that resident memory is what the rank uses. MADV_PAGEOUT keeps the contents (pages
// of the mapped checkpoint are dropped and read again from the file if ever touched, e.g. a tied
// embedding's rows); where it cannot reclaim (anonymous memory without swap) nothing changes.
void release_pages(const float* w, size_t bytes) {
#ifdef MADV_PAGEOUT
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(w) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(w) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
#else
  (void)w, (void)bytes;
#endif
}

// The pages of a float32 matrix that stays in the mapped checkpoint are mapped in now, at load:
// left to the first decode step, faulting them in page by page (from the page cache) cost that
// step about as much as streaming them. Only the rows given: an expert rank that computes half of
// the lm_head maps that half.
void map_in(const float* w, size_t bytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(w) / page * page;
  const uintptr_t end = (uintptr_t(w) + bytes + page - 1) / page * page;
#ifdef MADV_POPULATE_READ
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
#endif
  float sum = 0;  // kernels without MADV_POPULATE_READ: touch a float of every page
  for (const float* p = w; p < w + bytes / sizeof(float); p += page / sizeof(float)) sum += *p;
  volatile float keep = sum;
  (void)keep;
}

}  // namespace

void CpuDevice::prepare_weight(const float* w, int rows, int cols) {
  if (w == nullptr || prepared_.count(w)) return;
  if (format_ == WeightFormat::kF32) return map_in(w, size_t(rows) * cols * sizeof(float));
  auto it = prepared_.emplace(w, Prepared{StoredWeight(format_, w, rows, cols), cols}).first;
  prepared_bytes_ += it->second.stored.bytes();
  release_pages(w, size_t(rows) * cols * sizeof(float));
}

WeightMatrix CpuDevice::weights_at(const float* w, int N, int K) const {
  const WeightMatrix as_is{WeightFormat::kF32, w, nullptr};
  auto it = prepared_.upper_bound(w);
  if (it == prepared_.begin()) return as_is;
  --it;
  const Prepared& p = it->second;
  // Compared as addresses: w may lie in another allocation than the prepared matrix.
  const uintptr_t offset = (uintptr_t(w) - uintptr_t(it->first)) / sizeof(float);
  if (p.cols != K || offset % K != 0 || offset / K + N > p.stored.rows()) return as_is;
  return p.stored.view().rows_from(offset / K, K);
}

// The GEMM of many rows, its N outputs split over the pool: each thread one single-threaded GEMM
// on its columns (whole multiples of 16). oneDNN's kernels follow the CPU's vector units (AVX-512
// where there is AVX-512), where OpenBLAS picks its kernel by CPU model and falls back to AVX2 on
// models it does not know (measured: half the rate; docs/BENCHMARKS.md, section 8). Compact
// weights are widened to float32 a block of rows at a time (a block that stays in the
// second-level cache), one GEMM per block.
void CpuDevice::sgemm(const float* x, const WeightMatrix& w, float* y, int M, int N, int K,
                      bool accumulate) {
  constexpr int kColumnsPerChunk = 16;
  const int chunks = (N + kColumnsPerChunk - 1) / kColumnsPerChunk;
  const float beta = accumulate ? 1.0f : 0.0f;
  parallel_for(chunks, [&](int begin, int end) {
    const int n0 = begin * kColumnsPerChunk, n1 = std::min(N, end * kColumnsPerChunk);
    if (w.format == WeightFormat::kF32) {
      sgemm_one_thread(true, M, n1 - n0, K, x, K,
                       static_cast<const float*>(w.data) + size_t(n0) * K, K, beta, y + n0, N);
      return;
    }
    constexpr size_t kBlockBytes = 256 << 10;
    const int block = std::max<int>(kColumnsPerChunk, int(kBlockBytes / (sizeof(float) * K)) /
                                                          kColumnsPerChunk * kColumnsPerChunk);
    thread_local std::vector<float> widened;
    if (widened.size() < size_t(block) * K) widened.resize(size_t(block) * K);
    for (int b = n0; b < n1; b += block) {
      const int rows = std::min(block, n1 - b);
      w.widen(b, b + rows, K, widened.data());
      sgemm_one_thread(true, M, rows, K, x, K, widened.data(), K, beta, y + b, N);
    }
  });
}

std::string CpuDevice::name() const {
  const std::string base = "cpu:" + std::to_string(threads_);
  return format_ == WeightFormat::kF32 ? base : base + ":" + weight_format_name(format_);
}

void CpuDevice::linear(const float* x, const float* w, float* y, int M, int N, int K,
                       bool accumulate) {
  if (M == 0 || N == 0) return;
  const WeightMatrix weights = weights_at(w, N, K);
  if (M <= skinny_max_rows(simd_, K))
    return skinny_gemm(simd_, x, weights, y, M, N, K, accumulate, /*relu=*/false);
  sgemm(x, weights, y, M, N, K, accumulate);
}

// The kernel per expert group: few rows by skinny_gemm (ReLU fused into the first product), more
// by the many-row GEMM. Figures: docs/BENCHMARKS.md, sections 1, 5 and 8.
void CpuDevice::expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                           int d_model, int d_ff) {
  int max_rows = 0;
  for (const auto& g : groups) max_rows = std::max(max_rows, g.rows);
  const size_t hidden_floats = size_t(max_rows) * d_ff;
  if (hidden_.size() < hidden_floats) hidden_.resize(hidden_floats);
  for (const auto& g : groups) {
    if (g.rows == 0) continue;
    const float* xg = x + size_t(g.first_row) * d_model;
    float* yg = y + size_t(g.first_row) * d_model;
    const WeightMatrix wi = weights_at(g.weights.wi, d_ff, d_model);
    const WeightMatrix wo = weights_at(g.weights.wo, d_model, d_ff);
    if (g.rows <= std::min(skinny_max_rows(simd_, d_model), skinny_max_rows(simd_, d_ff))) {
      skinny_gemm(simd_, xg, wi, hidden_.data(), g.rows, d_ff, d_model, false, /*relu=*/true);
      skinny_gemm(simd_, hidden_.data(), wo, yg, g.rows, d_model, d_ff, false, /*relu=*/false);
      continue;
    }
    sgemm(xg, wi, hidden_.data(), g.rows, d_ff, d_model, false);
    const size_t n = size_t(g.rows) * d_ff;
    for (size_t i = 0; i < n; ++i) hidden_[i] = std::max(hidden_[i], 0.0f);
    sgemm(hidden_.data(), wo, yg, g.rows, d_model, d_ff, false);
  }
}

}  // namespace moe
