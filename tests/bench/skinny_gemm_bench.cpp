// The decode products on the CPU: skinny_gemm (runtime/cpu/skinny_gemm.hpp) at each SIMD level
// this CPU runs and in each weight format (float32, bfloat16, int8 with row scales), and float32
// in panels (runtime/cpu/panel_gemm.hpp, "LEVEL panels" in the table), against two
// peers on float32 weights: oneDNN's sgemm (what CpuDevice uses above the crossover) and
// OpenBLAS's (sgemv at one row), one thread, on
// switch-base-8's shapes — attention projection 768×768, expert/dense wi 3072×768, wo 768×3072,
// lm_head 32128×768 — at 1 to 256 rows. The weights cycle through copies that together exceed the
// last-level cache (≥ 96 MB), so every call streams its weights from memory, as in a decode step.
//
// Timed side by side (ours, oneDNN, OpenBLAS, ours, …: a noisy machine slows all alike); the whole
// sweep is registered --sweeps times (default 3). The table at the end gives per row the median
// over sweeps of GFLOP/s and of the weights' read rate (GB/s), the ratio oneDNN time / ours, and
// the read
// rate as a share of the memory's read bandwidth measured in the same binary (best of the sweeps
// of summing 512 MiB with the widest vectors): at few rows the limit is that bandwidth.
//
// A compact format reads fewer bytes per weight: its GB/s are the bytes it stores (int8: one per
// weight plus a scale per row), so "of limit" is how close it streams to the memory's bandwidth.
// Correctness: each level's output is checked against sgemm's on the same weights as stored,
// widened to float32, before timing (|diff| ≤ 1e-4 · sqrt(K)); a mismatch aborts the run.
// Usage: bench_skinny_gemm [--sweeps=N] [--formats=f32,bf16,int8] [--levels=all|best]
//                          [--rows=1,2,4,8,16,32,64,128,256]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cpu/bf16_gemm.hpp"
#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/panel_gemm.hpp"
#include "runtime/cpu/sgemm.hpp"
#include "runtime/cpu/skinny_gemm.hpp"
#include "runtime/cpu/weight_matrix.hpp"
#include "runtime/thread_pool.hpp"

extern "C" void openblas_set_num_threads(int);

namespace moe {
namespace {

constexpr int kIterations = 7;  // timed rounds per benchmark, after one warm-up
constexpr double kStreamBytes = 96e6;
struct Shape {
  const char* name;
  int N, K;
};
constexpr Shape kShapes[] = {{"attention 768x768", 768, 768},
                             {"wi 3072x768", 3072, 768},
                             {"wo 768x3072", 768, 3072},
                             {"lm_head 32128x768", 32128, 768}};
std::vector<int> g_row_counts = {1, 2, 4, 8, 16, 32, 64, 128, 256};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Enough copies of one shape's weights in one format to stream from memory (≥ kStreamBytes as
// stored), and rows of x and y for the most rows --rows asks for.
struct Weights {
  std::vector<std::vector<float>> copies;    // float32
  std::vector<StoredWeight> stored;          // the compact format's copies
  std::vector<AlignedVector<float>> panels;  // float32 copies in panels, made when first asked
  std::vector<float> x, y, peer_y, widened;  // widened: copy 0 as the kernel sees it
  Weights(const Shape& s, WeightFormat format) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const size_t n = size_t(s.N) * s.K;
    const double stored_bytes = format == WeightFormat::kF32    ? 4
                                : format == WeightFormat::kBf16 ? 2
                                                                : 1;
    const int count = std::max(2, int(std::ceil(kStreamBytes / (n * stored_bytes))));
    const int float_copies = format == WeightFormat::kF32 ? count : 1;
    for (int c = 0; c < float_copies; ++c) {
      copies.emplace_back(n);
      for (float& v : copies.back()) v = 0.03f * dist(rng);
    }
    if (format != WeightFormat::kF32)
      for (int c = 0; c < count; ++c) stored.emplace_back(format, copies[0].data(), s.N, s.K);
    widened.resize(n);
    matrix(0).widen(0, s.N, s.K, widened.data());
    const size_t rows = *std::max_element(g_row_counts.begin(), g_row_counts.end());
    x.resize(rows * s.K);
    for (float& v : x) v = dist(rng);
    y.resize(rows * s.N);
    peer_y.resize(y.size());
  }
  // Each call takes the next copy in the cycle, carried across benchmarks: a copy is read again
  // only after all others (≥ kStreamBytes later), never from the cache.
  size_t next = 0;
  WeightMatrix matrix(size_t c) const {
    if (stored.empty()) return {WeightFormat::kF32, copies[c % copies.size()].data(), nullptr};
    return stored[c % stored.size()].view();
  }
  const float* float_copy(size_t c) const { return copies[c % copies.size()].data(); }
  std::vector<StoredWeight> stored_panels;  // the compact format's copies in its panels
  WeightMatrix stored_panel_copy(size_t c, const Shape& s) {
    if (stored_panels.empty())
      for (size_t i = 0; i < stored.size(); ++i)
        stored_panels.emplace_back(stored[i].view().format, copies[0].data(), s.N, s.K,
                                   WeightLayout::kPanels);
    return stored_panels[c % stored_panels.size()].view();
  }
  WeightMatrix panel_copy(size_t c, const Shape& s) {
    if (panels.empty())
      for (const auto& copy : copies) panels.push_back(pack_panels(copy.data(), s.N, s.K));
    return {WeightFormat::kF32, panels[c % panels.size()].data(), nullptr, nullptr,
            WeightLayout::kPanels};
  }
};
Weights& weights(int shape, WeightFormat format) {
  static std::map<std::pair<int, WeightFormat>, Weights> all;
  const auto key = std::make_pair(shape, format);
  auto it = all.find(key);
  if (it == all.end()) it = all.emplace(key, Weights(kShapes[shape], format)).first;
  return it->second;
}

struct Samples {
  std::vector<double> ours, peer, openblas;
};
std::map<std::string, Samples> g_rows;
std::vector<std::string> g_order;
double g_bandwidth = 0;        // best GB/s over sweeps, one thread
double g_bandwidth_cores = 0;  // the same, one thread per core, each summing its share

void openblas(const Shape& s, const float* w, Weights& b, int M) {
  if (M == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, s.N, s.K, 1.0f, w, s.K, b.x.data(), 1, 0.0f,
                b.peer_y.data(), 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, s.N, s.K, 1.0f, b.x.data(), s.K, w, s.K,
                0.0f, b.peer_y.data(), s.N);
}
void peer(const Shape& s, const float* w, Weights& b, int M) {
  sgemm_one_thread(true, M, s.N, s.K, b.x.data(), s.K, w, s.K, 0.0f, b.peer_y.data(), s.N);
}

// kDot: the format's dot-product kernel on HF's rows; kDotPanels: the same on the panels the
// device lays out for it; kAmx: int8 on AMX tiles from those panels.
enum class Kernel { kSkinny, kDot, kPanels, kDotPanels, kAmx };

// Ours: skinny_gemm at `level`, panel_gemm at `level` (float32 panels), or (dot) the kernel of the
// format's own dot product that the device runs where the CPU has it: int8 activations on AVX-512
// VNNI for int8 weights, bf16 activations on AVX-512 BF16 for bf16 weights — the activations
// quantised or rounded in the timed call.
void run_ours(const Shape& s, const Weights& b, const WeightMatrix& w, float* y, int M,
              SimdLevel level, Kernel kernel) {
  if (kernel == Kernel::kSkinny)
    return skinny_gemm(level, b.x.data(), w, y, M, s.N, s.K, false, false, 1);
  if (kernel == Kernel::kPanels)
    return panel_gemm(level, b.x.data(), static_cast<const float*>(w.data), y, M, s.N, s.K, false,
                      false, false);
  if (w.format == WeightFormat::kBf16) {
    static Bf16Rows rows;
    round_rows_to_bf16(b.x.data(), M, s.K, rows);
    const auto* b16 = static_cast<const uint16_t*>(w.data);
    if (kernel == Kernel::kDotPanels)
      return bf16_gemm_dot_panels(rows, b16, y, s.N, false, false, 0, s.N);
    return bf16_gemm_dot(rows, b16, y, s.N, false, false, 0, s.N);
  }
  static QuantizedRows q;
  quantize_rows(b.x.data(), M, s.K, q);
  const auto* q8 = static_cast<const int8_t*>(w.data);
  if (kernel == Kernel::kAmx)
    return int8_gemm_amx_panels(q, q8, w.scales, w.sums, y, s.N, false, false, 0, s.N);
  if (kernel == Kernel::kDotPanels)
    return int8_gemm_vnni_panels(q, q8, w.scales, w.sums, y, s.N, false, false, 0, s.N);
  int8_gemm_vnni(q, q8, w.scales, w.sums, y, s.N, false, false, 0, s.N);
}

// x as the dot kernels see it: bf16-rounded, or s · (q - 128).
std::vector<float> activations_as_used(const Weights& b, int M, int K, WeightFormat format) {
  std::vector<float> x(b.x.begin(), b.x.begin() + size_t(M) * K);
  if (format == WeightFormat::kBf16) {
    for (float& v : x) v = from_bf16(to_bf16(v));
    return x;
  }
  QuantizedRows q;
  quantize_rows(b.x.data(), M, K, q);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k)
      x[size_t(m) * K + k] = q.scale[m] * float(int(q.q[size_t(m) * q.stride + k]) - 128);
  return x;
}

void BM_Skinny(benchmark::State& state, int shape, int M, SimdLevel level, WeightFormat format,
               Kernel kernel) {
  const Shape& s = kShapes[shape];
  Weights& b = weights(shape, format);
  const bool dot = kernel != Kernel::kSkinny && kernel != Kernel::kPanels;
  const auto matrix = [&](size_t c) {
    if (kernel == Kernel::kPanels) return b.panel_copy(c, s);
    if (kernel == Kernel::kDotPanels || kernel == Kernel::kAmx) return b.stored_panel_copy(c, s);
    return b.matrix(c);
  };
  openblas_set_num_threads(1);
  run_ours(s, b, matrix(0), b.y.data(), M, level, kernel);
  if (dot) {  // the reference multiplies x as the kernel sees it
    const auto x = activations_as_used(b, M, s.K, format);
    sgemm_one_thread(true, M, s.N, s.K, x.data(), s.K, b.widened.data(), s.K, 0.0f, b.peer_y.data(),
                     s.N);
  } else {
    peer(s, b.widened.data(), b, M);
  }
  const std::string dot_name = kernel == Kernel::kAmx          ? "amx"
                               : format == WeightFormat::kInt8 ? "vnni"
                                                               : "bf16dot";
  const std::string level_name =
      !dot ? simd_level_name(level) + std::string(kernel == Kernel::kPanels ? " panels" : "")
           : dot_name + (kernel == Kernel::kDot ? "" : " panels");
  for (size_t i = 0; i < size_t(M) * s.N; ++i)
    if (!(std::abs(b.y[i] - b.peer_y[i]) <= 1e-4 * std::sqrt(double(s.K)))) {
      std::fprintf(stderr, "bench_skinny_gemm: %s %s %s M=%d: output %zu is %g, sgemm says %g\n",
                   level_name.c_str(), weight_format_name(format), s.name, M, i, b.y[i],
                   b.peer_y[i]);
      std::exit(1);
    }
  std::vector<double> ours, theirs, blas;
  Weights& f32 = weights(shape, WeightFormat::kF32);
  for (auto _ : state) {
    const WeightMatrix w = matrix(b.next++);
    double t0 = now_s();
    run_ours(s, b, w, b.y.data(), M, level, kernel);
    const double t = now_s() - t0;
    state.SetIterationTime(t);
    ours.push_back(t);
    // The peer streams float32 copies in every row: a compact format is compared with the
    // float32 sgemm it replaces.
    const float* wf = f32.float_copy(f32.next++);
    t0 = now_s();
    peer(s, wf, b, M);
    theirs.push_back(now_s() - t0);
    wf = f32.float_copy(f32.next++);
    t0 = now_s();
    openblas(s, wf, b, M);
    blas.push_back(now_s() - t0);
  }
  benchmark::DoNotOptimize(b.y.data());
  benchmark::DoNotOptimize(b.peer_y.data());
  const std::string name = std::string(s.name) + " M=" + std::to_string(M) + " " + level_name +
                           " " + weight_format_name(format);
  if (!g_rows.count(name)) g_order.push_back(name);
  g_rows[name].ours.push_back(median(ours));
  g_rows[name].peer.push_back(median(theirs));
  g_rows[name].openblas.push_back(median(blas));
}

// The read bandwidth: summing 512 MiB with 64 independent sums, best of 3; on one thread, and on
// one thread per core (the pool's), each summing a contiguous share at the same time: the limit of
// a weight-bound product on that many threads. The sums take the widest vectors this CPU has
// (AVX-512: four 64-byte loads per step): with the baseline build's 16-byte loads the probe read
// 34 GB/s where panel_gemm streamed 41 at one row.
typedef float Floats16 __attribute__((vector_size(64)));
typedef float Floats8 __attribute__((vector_size(32)));
typedef float Floats4 __attribute__((vector_size(16)));
template <class Vec>
float sum_floats_by(const float* p, size_t n) {
  constexpr int kLanes = sizeof(Vec) / sizeof(float), kSums = 64 / kLanes;
  Vec acc[kSums] = {};
  for (size_t i = 0; i < n; i += 64)
    for (int j = 0; j < kSums; ++j) {
      Vec v;
      std::memcpy(&v, p + i + j * kLanes, sizeof(Vec));
      acc[j] += v;
    }
  float total = 0;
  for (const Vec& a : acc)
    for (int l = 0; l < kLanes; ++l) total += a[l];
  return total;
}
__attribute__((target("avx512f"))) float sum_floats_avx512(const float* p, size_t n) {
  return sum_floats_by<Floats16>(p, n);
}
__attribute__((target("avx2"))) float sum_floats_avx2(const float* p, size_t n) {
  return sum_floats_by<Floats8>(p, n);
}
float sum_floats(const float* p, size_t n) {
  switch (best_simd_level()) {
    case SimdLevel::kAvx512:
      return sum_floats_avx512(p, n);
    case SimdLevel::kAvx2:
      return sum_floats_avx2(p, n);
    case SimdLevel::kBaseline:
      break;
  }
  return sum_floats_by<Floats4>(p, n);
}

void BM_ReadBandwidth(benchmark::State& state) {
  static AlignedVector<float> big(size_t(128) << 20, 1.0f);  // on huge pages, as the weights are
  const int threads = int(state.range(0));
  ThreadPool::instance().resize(threads);
  const size_t blocks = big.size() / 64;
  for (auto _ : state) {
    std::vector<float> sums(threads);
    const double t0 = now_s();
    parallel_for(threads, [&](int begin, int end) {
      for (int t = begin; t < end; ++t)
        sums[t] = sum_floats(big.data() + blocks * t / threads * 64,
                             (blocks * (t + 1) / threads - blocks * t / threads) * 64);
    });
    const double t = now_s() - t0;
    benchmark::DoNotOptimize(sums.data());
    state.SetIterationTime(t);
    double& best = threads == 1 ? g_bandwidth : g_bandwidth_cores;
    best = std::max(best, big.size() * sizeof(float) / t / 1e9);
  }
  ThreadPool::instance().resize(1);
}

void print_table() {
  std::printf("\nread bandwidth (one thread, best of sweeps): %.1f GB/s\n", g_bandwidth);
  if (g_bandwidth_cores > 0)
    std::printf("read bandwidth (%u threads, one per core, best of sweeps): %.1f GB/s\n",
                std::thread::hardware_concurrency(), g_bandwidth_cores);
  std::printf("%-44s %9s %9s %9s %9s %8s %9s\n", "shape rows level format", "ours GF/s", "onednn",
              "openblas", "ours GB/s", "of limit", "onednn/us");
  for (const auto& name : g_order) {
    const Samples& r = g_rows.at(name);
    int shape = 0;
    while (name.rfind(kShapes[shape].name, 0) != 0) ++shape;
    const Shape& s = kShapes[shape];
    const int M = std::atoi(name.c_str() + name.find("M=") + 2);
    std::vector<double> ratio;
    for (size_t i = 0; i < r.ours.size(); ++i) ratio.push_back(r.peer[i] / r.ours[i]);
    const double t = median(r.ours), tp = median(r.peer), tb = median(r.openblas);
    const double per_weight = name.find(" bf16") != std::string::npos   ? 2
                              : name.find(" int8") != std::string::npos ? 1 + 4.0 / s.K
                                                                        : 4;
    const double flops = 2.0 * M * s.N * s.K, bytes = per_weight * s.N * s.K;
    std::printf("%-44s %9.1f %9.1f %9.1f %9.1f %7.0f%% %9.2f\n", name.c_str(), flops / t / 1e9,
                flops / tp / 1e9, flops / tb / 1e9, bytes / t / 1e9,
                100 * bytes / t / 1e9 / g_bandwidth, median(ratio));
  }
}

}  // namespace
}  // namespace moe

std::vector<std::string> split(const char* list) {
  std::vector<std::string> out;
  for (const char* p = list; *p;) {
    const char* end = std::strchr(p, ',');
    out.emplace_back(p, end ? end : p + std::strlen(p));
    p = end ? end + 1 : p + std::strlen(p);
  }
  return out;
}

int main(int argc, char** argv) {
  using namespace moe;
  int sweeps = 3;
  std::vector<WeightFormat> formats = {WeightFormat::kF32, WeightFormat::kBf16,
                                       WeightFormat::kInt8};
  std::vector<SimdLevel> levels = {SimdLevel::kAvx512, SimdLevel::kAvx2, SimdLevel::kBaseline};
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--sweeps=", 9) == 0) sweeps = std::atoi(argv[i] + 9);
    if (std::strncmp(argv[i], "--formats=", 10) == 0) {
      formats.clear();
      for (const auto& f : split(argv[i] + 10))
        formats.push_back(parse_weight_format(f, "--formats"));
    }
    if (std::strcmp(argv[i], "--levels=best") == 0) levels = {best_simd_level()};
    if (std::strncmp(argv[i], "--rows=", 7) == 0) {
      g_row_counts.clear();
      for (const auto& r : split(argv[i] + 7)) g_row_counts.push_back(std::atoi(r.c_str()));
    }
  }
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    benchmark::RegisterBenchmark("read_bandwidth", BM_ReadBandwidth)
        ->Arg(1)
        ->Iterations(3)
        ->UseManualTime();
    if (std::thread::hardware_concurrency() > 1)
      benchmark::RegisterBenchmark("read_bandwidth_all_cores", BM_ReadBandwidth)
          ->Arg(int(std::thread::hardware_concurrency()))
          ->Iterations(3)
          ->UseManualTime();
    for (int shape = 0; shape < int(std::size(kShapes)); ++shape)
      for (int M : g_row_counts)
        for (WeightFormat format : formats)
          for (SimdLevel level : levels) {
            if (level > best_simd_level()) continue;
            const std::string base = std::string(kShapes[shape].name) + "/M:" + std::to_string(M) +
                                     "/" + simd_level_name(level) + "/" +
                                     weight_format_name(format);
            benchmark::RegisterBenchmark(base.c_str(), BM_Skinny, shape, M, level, format,
                                         Kernel::kSkinny)
                ->Iterations(kIterations)
                ->UseManualTime();
            if (format == WeightFormat::kF32)
              benchmark::RegisterBenchmark((base + "/panels").c_str(), BM_Skinny, shape, M, level,
                                           format, Kernel::kPanels)
                  ->Iterations(kIterations)
                  ->UseManualTime();
            const bool dot = (format == WeightFormat::kInt8 && int8_vnni_available()) ||
                             (format == WeightFormat::kBf16 && bf16_dot_available());
            if (!dot || level != best_simd_level()) continue;
            for (Kernel kernel : {Kernel::kDot, Kernel::kDotPanels, Kernel::kAmx}) {
              if (kernel == Kernel::kAmx &&
                  (format != WeightFormat::kInt8 || !int8_amx_available() || kShapes[shape].K % 64))
                continue;
              const char* suffix = kernel == Kernel::kDot         ? "/dot"
                                   : kernel == Kernel::kDotPanels ? "/dot-panels"
                                                                  : "/amx-panels";
              benchmark::RegisterBenchmark((base + suffix).c_str(), BM_Skinny, shape, M, level,
                                           format, kernel)
                  ->Iterations(kIterations)
                  ->UseManualTime();
            }
          }
  }
  // Unknown flags (e.g. --formats=) are ours: keep Google Benchmark from seeing them.
  int kept = 1;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--sweeps=", 9) && std::strncmp(argv[i], "--formats=", 10) &&
        std::strncmp(argv[i], "--levels=", 9) && std::strncmp(argv[i], "--rows=", 7))
      argv[kept++] = argv[i];
  argc = kept;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  print_table();
  benchmark::Shutdown();
}
