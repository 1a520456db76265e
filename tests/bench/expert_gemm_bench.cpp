// The expert FFN on the CPU (CpuDevice::expert_ffn: per expert group, OpenBLAS sgemm wi → ReLU →
// sgemm wo) for switch-base-8 shapes: d_model 768, d_ff 3072, 8 experts, 1..256 tokens per
// expert, balanced and skewed, 1 and 2 threads.
//
// The peer, timed in the same loop (ours, peer, ours, peer, … so that a noisy machine slows both
// alike): ONE plain OpenBLAS sgemm pair with M = the same total tokens — [M, 768]·[3072, 768]^T,
// ReLU, [M, 3072]·[768, 3072]^T — the same FLOPs, but one expert's weights (19 MB) instead of
// eight (151 MB). Figures: GFLOP/s of both, ours / peer, and the rate at which ours streams the
// expert weights. The limits, measured in the same binary before the benchmarks: the peak sgemm
// rate (a large square sgemm) on 1 and 2 threads, and the memory read bandwidth (summing a
// 512 MiB buffer) on 1 and 2 threads — at a few tokens per expert the FFN is bound by reading the
// weights, at many by the sgemm rate.
//
// Correctness: the first row of every expert group is checked against a double-precision loop
// before timing (relative tolerance 1e-4); a mismatch aborts the run.
// Usage: bench_expert_gemm [--benchmark_filter=REGEX] [--benchmark_min_time=...]
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_device.hpp"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace moe {
namespace {

constexpr int kDModel = 768, kDff = 3072, kExperts = 8, kMaxTokensPerExpert = 256;
constexpr int kMaxRows = kExperts * kMaxTokensPerExpert;
constexpr int kIterations = 21;  // timed pairs (ours + peer) per benchmark, after 2 warm-ups

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Tokens per expert: balanced, or skewed (Zipf, expert e gets ∝ 1/(e+1); same total).
std::vector<int> token_counts(int per_expert, bool skewed) {
  std::vector<int> counts(kExperts, per_expert);
  if (!skewed) return counts;
  const int total = per_expert * kExperts;
  double norm = 0;
  for (int e = 0; e < kExperts; ++e) norm += 1.0 / (e + 1);
  int assigned = 0;
  for (int e = 0; e < kExperts; ++e) assigned += counts[e] = int(total / norm / (e + 1));
  counts[0] += total - assigned;
  return counts;
}

// Everything the benchmarks share, made once: 8 experts' weights, activations, the peer's buffers.
struct Setup {
  std::vector<std::vector<float>> wi, wo;  // wi[d_ff, d_model], wo[d_model, d_ff] per expert
  std::vector<float> x, y;                 // [kMaxRows, d_model]
  std::vector<float> peer_h, peer_y;       // [kMaxRows, d_ff], [kMaxRows, d_model]

  Setup() : x(size_t(kMaxRows) * kDModel), y(x.size()), peer_h(size_t(kMaxRows) * kDff), peer_y(x.size()) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> w_dist(0.0f, 0.03f), x_dist(0.0f, 1.0f);
    for (int e = 0; e < kExperts; ++e) {
      wi.emplace_back(size_t(kDff) * kDModel);
      wo.emplace_back(size_t(kDModel) * kDff);
      for (float& v : wi.back()) v = w_dist(rng);
      for (float& v : wo.back()) v = w_dist(rng);
    }
    for (float& v : x) v = x_dist(rng);
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

// The peer: one sgemm pair over M rows with expert 0's weights (HF layout, as CpuDevice uses them).
void peer_ffn(Setup& s, int M) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, kDff, kDModel, 1.0f, s.x.data(), kDModel,
              s.wi[0].data(), kDModel, 0.0f, s.peer_h.data(), kDff);
  const size_t n = size_t(M) * kDff;
  for (size_t i = 0; i < n; ++i) s.peer_h[i] = std::max(s.peer_h[i], 0.0f);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, kDModel, kDff, 1.0f, s.peer_h.data(), kDff,
              s.wo[0].data(), kDff, 0.0f, s.peer_y.data(), kDModel);
}

// y_row = relu(x_row · wi^T) · wo^T in double: the reference for one row.
void check_row(const Setup& s, int expert, int row) {
  std::vector<double> h(kDff);
  const float* xr = s.x.data() + size_t(row) * kDModel;
  for (int f = 0; f < kDff; ++f) {
    double acc = 0;
    for (int k = 0; k < kDModel; ++k) acc += double(xr[k]) * s.wi[expert][size_t(f) * kDModel + k];
    h[f] = std::max(acc, 0.0);
  }
  double worst = 0, scale = 0;
  for (int m = 0; m < kDModel; ++m) {
    double acc = 0;
    for (int f = 0; f < kDff; ++f) acc += h[f] * s.wo[expert][size_t(m) * kDff + f];
    worst = std::max(worst, std::abs(acc - s.y[size_t(row) * kDModel + m]));
    scale = std::max(scale, std::abs(acc));
  }
  if (worst > 1e-4 * scale + 1e-6) {
    std::fprintf(stderr, "bench_expert_gemm: expert %d row %d differs from the reference by %g (scale %g)\n",
                 expert, row, worst, scale);
    std::exit(1);
  }
}

struct Row {
  std::string name;
  int threads, rows;
  double ours_us, peer_us, gflops, peer_gflops, weight_gbs;
};
std::vector<Row> g_rows;

void BM_ExpertFfn(benchmark::State& state, const std::string& name, int per_expert, bool skewed,
                  int threads) {
  Setup& s = setup();
  CpuDevice device(threads);  // sets the OpenBLAS and OpenMP thread counts; the peer uses them too
  const auto counts = token_counts(per_expert, skewed);
  std::vector<ExpertGroup> groups;
  int rows = 0;
  for (int e = 0; e < kExperts; ++e) {
    groups.push_back({{s.wi[e].data(), s.wo[e].data()}, rows, counts[e]});
    rows += counts[e];
  }
  std::fill(s.y.begin(), s.y.end(), std::nanf(""));  // poison: unwritten rows fail the check
  device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
  for (const auto& g : groups)
    if (g.rows > 0) check_row(s, int(&g - groups.data()), g.first_row);
  for (int i = 0; i < 2; ++i) {  // warm-up
    device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
    peer_ffn(s, rows);
  }
  std::vector<double> ours, peer;
  for (auto _ : state) {
    double t0 = now_s();
    device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
    const double t_ours = now_s() - t0;
    state.SetIterationTime(t_ours);
    ours.push_back(t_ours);
    t0 = now_s();
    peer_ffn(s, rows);
    peer.push_back(now_s() - t0);
  }
  benchmark::DoNotOptimize(s.y.data());
  benchmark::DoNotOptimize(s.peer_y.data());
  const double t = median(ours), tp = median(peer);
  const double flops = 4.0 * rows * kDModel * kDff;
  int used = 0;
  for (int c : counts) used += c > 0;
  const double weight_bytes = 2.0 * used * kDModel * kDff * sizeof(float);
  state.counters["GFLOP/s"] = flops / t / 1e9;
  state.counters["peer_GFLOP/s"] = flops / tp / 1e9;
  state.counters["ratio"] = tp / t;
  state.counters["weights_GB/s"] = weight_bytes / t / 1e9;
  g_rows.push_back({name, threads, rows, t * 1e6, tp * 1e6, flops / t / 1e9, flops / tp / 1e9, weight_bytes / t / 1e9});
}

// The limits: a large square sgemm's rate, and the read bandwidth, each median of 5 after 1 warm-up.
double peak_sgemm_gflops(int threads, int n) {
  openblas_set_num_threads(threads);
  std::vector<float> a(size_t(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  std::vector<double> t;
  for (int i = 0; i < 6; ++i) {
    const double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    if (i > 0) t.push_back(now_s() - t0);
  }
  benchmark::DoNotOptimize(c.data());
  return 2.0 * n * n * n / median(t) / 1e9;
}

double read_bandwidth_gbs(int threads) {
  const size_t n = size_t(512) << 20 >> 2;  // 512 MiB of floats: far beyond the 32 MiB L3
  std::vector<float> a(n, 1.0f);
  std::vector<double> t;
  for (int i = 0; i < 6; ++i) {
    float sum = 0;
    const double t0 = now_s();
    // 16 independent partial sums per thread: bound by memory, not by the latency of one add chain.
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
      float part[16] = {};
#pragma omp for schedule(static)
      for (size_t j = 0; j < n; j += 16)
        for (int k = 0; k < 16; ++k) part[k] += a[j + k];
      for (float p : part) sum += p;
    }
    if (i > 0) t.push_back(now_s() - t0);
    benchmark::DoNotOptimize(sum);
  }
  return n * sizeof(float) / median(t) / 1e9;
}

std::map<int, double> g_peak, g_bandwidth;

void print_context() {
  std::string cpu = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  std::printf("cpu: %s, %d online cores; OpenBLAS core %s (%s)\n", cpu.c_str(), omp_get_num_procs(),
              openblas_get_corename(), openblas_get_config());
  for (int threads : {1, 2}) {
    g_peak[threads] = peak_sgemm_gflops(threads, 2048);
    g_bandwidth[threads] = read_bandwidth_gbs(threads);
    std::printf("limits, %d thread(s): peak sgemm (2048^3) %.1f GFLOP/s; memory read %.1f GB/s\n",
                threads, g_peak[threads], g_bandwidth[threads]);
  }
}

void print_table() {
  std::printf("\n%-34s %6s %10s %10s %8s %8s %7s %7s %9s %7s\n",
              "expert FFN (768x3072, 8 experts)", "rows", "ours_us", "peer_us", "GFLOP/s", "peer", "ratio",
              "%peak", "weight GB/s", "%bw");
  for (const Row& r : g_rows) {
    const int threads = r.threads;
    std::printf("%-34s %6d %10.1f %10.1f %8.1f %8.1f %7.2f %6.0f%% %9.1f %6.0f%%\n", r.name.c_str(), r.rows,
                r.ours_us, r.peer_us, r.gflops, r.peer_gflops, r.gflops / r.peer_gflops,
                100 * r.gflops / g_peak[threads], r.weight_gbs, 100 * r.weight_gbs / g_bandwidth[threads]);
  }
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  using namespace moe;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  print_context();
  for (int threads : {1, 2})
    for (bool skewed : {false, true})
      for (int per_expert : {1, 8, 64, 256}) {
        const std::string name = std::string(skewed ? "skewed" : "balanced") + "/tokens_per_expert:" +
                                 std::to_string(per_expert) + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), BM_ExpertFfn, name, per_expert, skewed, threads)
            ->UseManualTime()
            ->Iterations(kIterations)
            ->Unit(benchmark::kMicrosecond);
      }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_table();
  return 0;
}
