#include "runtime/cpu/cpu_device.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/cpu/bf16_gemm.hpp"
#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/panel_gemm.hpp"
#include "runtime/cpu/sgemm.hpp"
#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/error.hpp"
#include "runtime/mapped_pages.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

// Up to how many rows skinny_gemm beats the many-row GEMM (oneDNN's) for a product over K: it
// reads each weight once and packs nothing, so it wins while the weights' bandwidth bounds the
// call; the GEMM's packed kernel wins once the rows make it compute-bound, and sooner for long
// rows (K = 3072: x's rows no longer stay in the first-level cache). AVX-512: measured by
// bench_skinny_gemm on one thread against oneDNN (docs/BENCHMARKS.md, section 8); the others were
// measured against OpenBLAS on AVX2 machines (section 5) and kept.
int skinny_max_rows(SimdLevel level, int K) {
  switch (level) {
    case SimdLevel::kAvx512:
      return K <= 1024 ? 48 : 32;
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
  // oneDNN builds its GEMM kernels on the first call (20 ms measured): here, at load, rather than
  // in the first request's time to first token.
  const float a[4] = {}, b[4] = {};
  float c[4];
  sgemm_one_thread(true, 2, 2, 2, a, 2, b, 2, 0.0f, c, 2);
  sgemm_one_thread(false, 2, 2, 2, a, 2, b, 2, 0.0f, c, 2);
}

void CpuDevice::prepare_weight(const float* w, int rows, int cols) {
  if (w == nullptr || prepared_.count(w)) return;
  // Mapped in at once (faulting the checkpoint's pages in one by one while copying was slower).
  map_in_pages(w, size_t(rows) * cols * sizeof(float));
  // bf16 and int8 in the panels of their dot-product kernels where the CPU runs those, read as
  // one stream (elsewhere HF's rows, for skinny_gemm's widening kernels).
  const bool dot = (format_ == WeightFormat::kBf16 && bf16_dot_available()) ||
                   (format_ == WeightFormat::kInt8 && int8_vnni_available());
  const WeightLayout layout = dot ? WeightLayout::kPanels : WeightLayout::kRows;
  auto it =
      prepared_.emplace(w, Prepared{StoredWeight(format_, w, rows, cols, layout), cols}).first;
  prepared_bytes_ += it->second.stored.bytes();
  // The float32 original of a converted or panelled matrix is not read again: its pages go back to
  // the kernel, so that resident memory is what the rank uses.
  page_out(w, size_t(rows) * cols * sizeof(float));
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
  const WeightMatrix stored = p.stored.view();
  // Panels are cut at their own boundaries only; other rows are read where they were loaded.
  if (stored.layout == WeightLayout::kPanels && offset / K % kPanelColumns != 0) return as_is;
  return stored.rows_from(offset / K, K);
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

// One product by the kernel that suits it: float32 panels by panel_gemm at every row count (each
// output one chain over k, whatever rows share the call); int8 weights on a CPU with VNNI by the
// int8 kernel and bf16 weights on a CPU with AVX-512 BF16 by the bf16 kernel, at every row count
// (each row's activations quantised or rounded on their own, so a row's result does not depend on
// the call's other rows); otherwise skinny_gemm up to the measured crossover, the many-row GEMM
// above it (ReLU then as a pass of its own).
void CpuDevice::product(const float* x, const WeightMatrix& w, float* y, int M, int N, int K,
                        bool accumulate, bool relu, bool parallel) {
  // Called inside a region of the pool (parallel false), a product keeps to its thread: its own
  // activation buffers and all N columns (the same bits as a split: each output is summed alone).
  thread_local QuantizedRows own_quantized;
  thread_local Bf16Rows own_rounded;
  QuantizedRows& quantized = parallel ? quantized_ : own_quantized;
  Bf16Rows& rounded = parallel ? rounded_ : own_rounded;
  if (w.layout == WeightLayout::kPanels && w.format == WeightFormat::kF32)
    return panel_gemm(simd_, x, static_cast<const float*>(w.data), y, M, N, K, accumulate, relu,
                      parallel);
  constexpr int kColumnsPerChunk = 64;  // threads take whole runs of blocks
  constexpr int kAmxMinRows = 8;  // below it VNNI panels stream as fast (BENCHMARKS section 11)
  const auto over_columns = [&](const std::function<void(int, int)>& columns) {
    if (!parallel) return columns(0, N);
    parallel_for((N + kColumnsPerChunk - 1) / kColumnsPerChunk, [&](int begin, int end) {
      columns(begin * kColumnsPerChunk, std::min(N, end * kColumnsPerChunk));
    });
  };
  if (w.format == WeightFormat::kBf16 && bf16_dot_available()) {
    round_rows_to_bf16(x, M, K, rounded);
    const uint16_t* b = static_cast<const uint16_t*>(w.data);
    return over_columns([&](int n0, int n1) {
      if (w.layout == WeightLayout::kPanels)
        return bf16_gemm_dot_panels(rounded, b, y, N, accumulate, relu, n0, n1);
      bf16_gemm_dot(rounded, b, y, N, accumulate, relu, n0, n1);
    });
  }
  if (w.format == WeightFormat::kInt8 && int8_vnni_available()) {
    quantize_rows(x, M, K, quantized);
    const int8_t* q = static_cast<const int8_t*>(w.data);
    // AMX tiles from kAmxMinRows rows (the same bits as VNNI's, so the choice cannot move a row).
    const bool amx = M >= kAmxMinRows && K % 64 == 0 && int8_amx_available();
    return over_columns([&](int n0, int n1) {
      if (w.layout == WeightLayout::kPanels && amx)
        return int8_gemm_amx_panels(quantized, q, w.scales, w.sums, y, N, accumulate, relu, n0, n1);
      if (w.layout == WeightLayout::kPanels)
        return int8_gemm_vnni_panels(quantized, q, w.scales, w.sums, y, N, accumulate, relu, n0,
                                     n1);
      int8_gemm_vnni(quantized, q, w.scales, w.sums, y, N, accumulate, relu, n0, n1);
    });
  }
  // A product of few outputs (a router's, one per expert) takes skinny_gemm at any row count: it
  // costs little either way, and a router's logits then keep their bits whatever rows share the
  // call, so a micro-batch routes each token as the whole batch does. Through the many-row GEMM at
  // 64 rows and skinny_gemm at 32, the last bits differed, and with bf16 weights (whose rounding
  // of the activations makes such a difference grow) 24 of 128 answers of a ping-pong run at
  // batch 64 left the single process's.
  constexpr int kFewOutputs = 256;
  if (M <= skinny_max_rows(simd_, K) || N <= kFewOutputs || !parallel)
    return skinny_gemm(simd_, x, w, y, M, N, K, accumulate, relu, parallel);
  sgemm(x, w, y, M, N, K, accumulate);
  if (relu)
    for (size_t i = 0, n = size_t(M) * N; i < n; ++i) y[i] = std::max(y[i], 0.0f);
}

void CpuDevice::linear(const float* x, const float* w, float* y, int M, int N, int K,
                       bool accumulate) {
  if (M == 0 || N == 0) return;
  product(x, weights_at(w, N, K), y, M, N, K, accumulate, /*relu=*/false);
}

// Per expert group: hidden = relu(x · wiᵀ), y = hidden · woᵀ. Groups of a few rows (a decode
// step's experts) are bound by reading their weights: with float32 weights, every such group's
// products are cut into runs of columns and the runs of all groups shared evenly over the pool's
// threads, one region for the wi products and one for the wo products. Handing each thread whole
// groups instead left one thread a group more than the other (5 groups at batch 8 on 2 threads:
// 3 against 2); splitting the columns group by group cost two waits per group. The other formats
// keep whole groups per thread. Larger groups split their columns. Figures: docs/BENCHMARKS.md,
// sections 1, 5 and 8.
void CpuDevice::expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                           int d_model, int d_ff) {
  const auto run = [&](const ExpertGroup& g, std::vector<float>& hidden, bool parallel) {
    if (hidden.size() < size_t(g.rows) * d_ff) hidden.resize(size_t(g.rows) * d_ff);
    const float* xg = x + size_t(g.first_row) * d_model;
    float* yg = y + size_t(g.first_row) * d_model;
    product(xg, weights_at(g.weights.wi, d_ff, d_model), hidden.data(), g.rows, d_ff, d_model,
            false, /*relu=*/true, parallel);
    product(hidden.data(), weights_at(g.weights.wo, d_model, d_ff), yg, g.rows, d_model, d_ff,
            false, /*relu=*/false, parallel);
  };
  constexpr int kFewRows = 8;
  const int few =
      std::min({kFewRows, skinny_max_rows(simd_, d_model), skinny_max_rows(simd_, d_ff)});
  small_groups_.clear();
  for (const auto& g : groups)
    if (g.rows > 0 && g.rows <= few && threads_ > 1) small_groups_.push_back(&g);
  if (small_groups_.size() >= 2 && format_ == WeightFormat::kF32)
    few_row_groups_by_columns(x, y, d_model, d_ff);
  else if (small_groups_.size() >= 2)
    parallel_for(int(small_groups_.size()), [&](int begin, int end) {
      thread_local std::vector<float> hidden;
      for (int i = begin; i < end; ++i) run(*small_groups_[i], hidden, /*parallel=*/false);
    });
  else
    small_groups_.clear();
  for (const auto& g : groups)
    if (g.rows > 0 &&
        std::find(small_groups_.begin(), small_groups_.end(), &g) == small_groups_.end())
      run(g, hidden_, /*parallel=*/true);
}

// small_groups_' products by runs of columns over the threads (the same bits as whole products:
// each output is summed alone, whoever computes it).
void CpuDevice::few_row_groups_by_columns(const float* x, float* y, int d_model, int d_ff) {
  const int n = int(small_groups_.size());
  std::vector<size_t> hidden_at(n + 1, 0);
  std::vector<WeightMatrix> wi(n), wo(n);
  for (int i = 0; i < n; ++i) {
    const ExpertGroup& g = *small_groups_[i];
    hidden_at[i + 1] = hidden_at[i] + size_t(g.rows) * d_ff;
    wi[i] = weights_at(g.weights.wi, d_ff, d_model);
    wo[i] = weights_at(g.weights.wo, d_model, d_ff);
  }
  if (hidden_.size() < hidden_at[n]) hidden_.resize(hidden_at[n]);
  // Runs of 192 columns: whole panels (48) and whole skinny blocks (64).
  constexpr int kRun = 4 * kPanelColumns;
  static_assert(kRun % kSkinnyColumnsPerRun == 0);
  const auto by_runs = [&](int columns, const auto& product_of) {
    const int runs = (columns + kRun - 1) / kRun;
    parallel_for(n * runs, [&](int begin, int end) {
      for (int r = begin; r < end; ++r) {
        const int c0 = (r % runs) * kRun;
        product_of(r / runs, c0, std::min(columns, c0 + kRun));
      }
    });
  };
  const auto columns_of = [&](const float* in, const WeightMatrix& w, float* out, int rows, int N,
                              int K, bool relu, int c0, int c1) {
    if (w.layout == WeightLayout::kPanels)
      return panel_gemm_columns(simd_, in, static_cast<const float*>(w.data), out, rows, N, K,
                                false, relu, c0, c1);
    skinny_gemm_columns(simd_, in, w, out, rows, N, K, false, relu, c0, c1);
  };
  by_runs(d_ff, [&](int i, int c0, int c1) {
    const ExpertGroup& g = *small_groups_[i];
    columns_of(x + size_t(g.first_row) * d_model, wi[i], hidden_.data() + hidden_at[i], g.rows,
               d_ff, d_model, /*relu=*/true, c0, c1);
  });
  by_runs(d_model, [&](int i, int c0, int c1) {
    const ExpertGroup& g = *small_groups_[i];
    columns_of(hidden_.data() + hidden_at[i], wo[i], y + size_t(g.first_row) * d_model, g.rows,
               d_model, d_ff, /*relu=*/false, c0, c1);
  });
}

}  // namespace moe
