// The expert FFN on the CPU (CpuDevice::expert_ffn: per expert group wi → ReLU → wo, by skinny_gemm
// for few rows, else by sgemm over the rows padded to a multiple of 4) for switch-base-8
// shapes: d_model 768, d_ff 3072, 8 experts, 1..256 tokens per expert, balanced and skewed, 1 and
// 2 threads.
//
// The peer, timed in the same loop (ours, peer, ours, peer, … so that a noisy machine slows both
// alike): ONE plain OpenBLAS sgemm pair with M = the same total tokens — [M, 768]·[3072, 768]^T,
// ReLU, [M, 3072]·[768, 3072]^T — the same FLOPs, but one expert's weights (19 MB) instead of up
// to eight (151 MB). Figures: GFLOP/s of both, ours / peer, and the rate at which ours streams
// the expert weights. A third variant is timed in the same loop: the kernel CpuDevice::expert_ffn
// had before it chose per group (one plain sgemm pair per group, whatever its rows), so the table
// shows what skinny_gemm for few rows and padding to a multiple of 4 rows win.
//
// The limits, measured in the same binary: the peak sgemm rate (a 2048³ sgemm) and the memory read
// bandwidth (summing 512 MiB), on 1 and 2 threads. At a few tokens per expert the FFN is bound by
// reading the weights, at many by the sgemm rate.
//
// The machine this runs on is shared and noisy, so the whole sweep is registered --sweeps times
// (default 3) and runs in that order: each row's samples are spread over the run. The table at the
// end gives per row the median over sweeps (ratio: median of the per-sweep side-by-side ratios),
// and for the limits the best sweep (a capability, which load only ever lowers).
//
// Correctness: the first row of every expert group is checked against a double-precision loop
// before timing (relative tolerance 1e-4); a mismatch aborts the run.
// Usage: bench_expert_gemm [--sweeps=N] [--benchmark_filter=REGEX]
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_device.hpp"
#include "tests/bench/expert_shapes.hpp"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);

namespace moe {
namespace {

using namespace expert_shapes;
constexpr int kMaxTokensPerExpert = kCpuTokensPerExpert.back();
constexpr int kMaxRows = kExperts * kMaxTokensPerExpert;
constexpr int kIterations = 11;  // timed rounds (ours, peer, plain) per benchmark, after 2 warm-ups

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Everything the benchmarks share, made once: 8 experts' weights, activations, the peer's buffers.
struct Setup {
  std::vector<std::vector<float>> wi, wo;  // wi[d_ff, d_model], wo[d_model, d_ff] per expert
  std::vector<float> x, y;                 // [kMaxRows, d_model]
  std::vector<float> peer_h, peer_y;       // [kMaxRows, d_ff], [kMaxRows, d_model]

  Setup()
      : x(size_t(kMaxRows) * kDModel),
        y(x.size()),
        peer_h(size_t(kMaxRows) * kDff),
        peer_y(x.size()) {
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
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, kDModel, kDff, 1.0f, s.peer_h.data(),
              kDff, s.wo[0].data(), kDff, 0.0f, s.peer_y.data(), kDModel);
}

// The kernel before: one plain sgemm pair per group, whatever its rows.
void plain_ffn(Setup& s, const std::vector<ExpertGroup>& groups) {
  for (const auto& g : groups) {
    if (g.rows == 0) continue;
    const float* xg = s.x.data() + size_t(g.first_row) * kDModel;
    float* h = s.peer_h.data() + size_t(g.first_row) * kDff;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.rows, kDff, kDModel, 1.0f, xg, kDModel,
                g.weights.wi, kDModel, 0.0f, h, kDff);
    for (size_t i = 0; i < size_t(g.rows) * kDff; ++i) h[i] = std::max(h[i], 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.rows, kDModel, kDff, 1.0f, h, kDff,
                g.weights.wo, kDff, 0.0f, s.peer_y.data() + size_t(g.first_row) * kDModel, kDModel);
  }
}

// y_row = relu(x_row · wi^T) · wo^T in double: the reference for one row of `out`.
void check_row(const Setup& s, int expert, int row, const std::vector<float>& out,
               const char* what) {
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
    const double got = out[size_t(row) * kDModel + m];
    worst = std::isnan(got) ? INFINITY : std::max(worst, std::abs(acc - got));
    scale = std::max(scale, std::abs(acc));
  }
  if (worst > 1e-4 * scale + 1e-6) {
    std::fprintf(
        stderr,
        "bench_expert_gemm: %s: expert %d row %d differs from the reference by %g (scale %g)\n",
        what, expert, row, worst, scale);
    std::exit(1);
  }
}

// Per row of the table: each sweep's medians (seconds).
struct Samples {
  int threads = 0, rows = 0, experts_used = 0;
  std::vector<double> ours, peer, plain, ratio, gain;
};
std::map<std::string, Samples> g_rows;
std::vector<std::string> g_order;
std::map<int, double> g_peak, g_bandwidth;  // threads → best GFLOP/s, GB/s over sweeps

void BM_ExpertFfn(benchmark::State& state, const std::string& name, int per_expert, bool skewed,
                  int threads) {
  Setup& s = setup();
  CpuDevice device(threads);  // sizes the thread pool; sets OpenBLAS to one thread (the peer too)
  const auto counts = token_counts(per_expert, skewed);
  std::vector<ExpertGroup> groups;
  int rows = 0, used = 0;
  for (int e = 0; e < kExperts; ++e) {
    groups.push_back({{s.wi[e].data(), s.wo[e].data()}, rows, counts[e]});
    rows += counts[e];
    used += counts[e] > 0;
  }
  std::fill(s.y.begin(), s.y.end(), std::nanf(""));  // poison: unwritten rows fail the check
  std::fill(s.peer_y.begin(), s.peer_y.end(), std::nanf(""));
  device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
  plain_ffn(s, groups);
  for (size_t e = 0; e < groups.size(); ++e)
    for (int r = groups[e].first_row; r < groups[e].first_row + groups[e].rows;
         r += std::max(1, groups[e].rows - 1)) {
      check_row(s, int(e), r, s.y, "CpuDevice::expert_ffn");  // first and last row of each group
      check_row(s, int(e), r, s.peer_y, "plain sgemm variant");
    }
  for (int i = 0; i < 2; ++i) {  // warm-up
    device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
    peer_ffn(s, rows);
  }
  std::vector<double> ours, peer, plain;
  for (auto _ : state) {
    double t0 = now_s();
    device.expert_ffn(groups, s.x.data(), s.y.data(), kDModel, kDff);
    const double t_ours = now_s() - t0;
    state.SetIterationTime(t_ours);
    ours.push_back(t_ours);
    t0 = now_s();
    peer_ffn(s, rows);
    peer.push_back(now_s() - t0);
    t0 = now_s();
    plain_ffn(s, groups);
    plain.push_back(now_s() - t0);
  }
  benchmark::DoNotOptimize(s.y.data());
  benchmark::DoNotOptimize(s.peer_y.data());
  const double t = median(ours), tp = median(peer);
  const double flops = 4.0 * rows * kDModel * kDff;
  const double weight_bytes = 2.0 * used * kDModel * kDff * sizeof(float);
  state.counters["GFLOP/s"] = flops / t / 1e9;
  state.counters["peer_GFLOP/s"] = flops / tp / 1e9;
  state.counters["ratio"] = tp / t;
  state.counters["weights_GB/s"] = weight_bytes / t / 1e9;
  state.counters["plain_over_ours"] = median(plain) / t;
  Samples& row = g_rows[name];
  if (row.ours.empty()) g_order.push_back(name);
  row.threads = threads;
  row.rows = rows;
  row.experts_used = used;
  row.ours.push_back(t);
  row.peer.push_back(tp);
  row.ratio.push_back(tp / t);
  row.plain.push_back(median(plain));
  row.gain.push_back(median(plain) / t);
}

// The limits: a large square sgemm's rate, and the read bandwidth; median of 5 after 1 warm-up.
void BM_PeakSgemm(benchmark::State& state, int threads) {
  constexpr int n = 2048;
  openblas_set_num_threads(threads);
  std::vector<float> a(size_t(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };
  run();
  std::vector<double> t;
  for (auto _ : state) {
    const double t0 = now_s();
    run();
    t.push_back(now_s() - t0);
    state.SetIterationTime(t.back());
  }
  benchmark::DoNotOptimize(c.data());
  const double gflops = 2.0 * n * n * n / median(t) / 1e9;
  state.counters["GFLOP/s"] = gflops;
  g_peak[threads] = std::max(g_peak[threads], gflops);
}

void BM_ReadBandwidth(benchmark::State& state, int threads) {
  const size_t n = size_t(512) << 20 >> 2;  // 512 MiB of floats: far beyond the last-level cache
  static std::vector<float> a(n, 1.0f);
  auto run = [&] {
    float sum = 0;
    // 16 independent partial sums per thread: bound by memory, not by the latency of one add chain.
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
      float part[16] = {};
#pragma omp for schedule(static)
      for (size_t j = 0; j < n; j += 16)
        for (int k = 0; k < 16; ++k) part[k] += a[j + k];
      for (float p : part) sum += p;
    }
    benchmark::DoNotOptimize(sum);
  };
  run();
  std::vector<double> t;
  for (auto _ : state) {
    const double t0 = now_s();
    run();
    t.push_back(now_s() - t0);
    state.SetIterationTime(t.back());
  }
  const double gbs = n * sizeof(float) / median(t) / 1e9;
  state.counters["GB/s"] = gbs;
  g_bandwidth[threads] = std::max(g_bandwidth[threads], gbs);
}

void print_context() {
  std::string cpu = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  double load[3] = {};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  std::printf("cpu: %s, %d online cores; load average %.2f; OpenBLAS core %s (%s)\n", cpu.c_str(),
              omp_get_num_procs(), load[0], openblas_get_corename(), openblas_get_config());
}

void print_table() {
  std::printf("\nlimits (best sweep): ");
  for (auto [threads, peak] : g_peak)
    std::printf("%d thread(s): peak sgemm %.1f GFLOP/s, memory read %.1f GB/s;  ", threads, peak,
                g_bandwidth[threads]);
  std::printf("\n%-40s %5s %9s %9s %8s %8s %6s %6s %8s %5s %9s %10s\n",
              "expert FFN 768x3072, 8 experts (median of sweeps)", "rows", "ours_us", "peer_us",
              "GFLOP/s", "peer", "ratio", "%peak", "wgt_GB/s", "%bw", "plain_us", "plain/ours");
  for (const auto& name : g_order) {
    const Samples& r = g_rows[name];
    const double t = median(r.ours), tp = median(r.peer);
    const double flops = 4.0 * r.rows * kDModel * kDff, gflops = flops / t / 1e9;
    const double wgbs = 2.0 * r.experts_used * kDModel * kDff * sizeof(float) / t / 1e9;
    std::printf("%-40s %5d %9.0f %9.0f %8.1f %8.1f %6.2f %5.0f%% %8.1f %4.0f%% %9.0f %10.2f\n",
                name.c_str(), r.rows, t * 1e6, tp * 1e6, gflops, flops / tp / 1e9, median(r.ratio),
                100 * gflops / g_peak[r.threads], wgbs, 100 * wgbs / g_bandwidth[r.threads],
                median(r.plain) * 1e6, median(r.gain));
  }
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  using namespace moe;
  int sweeps = 3;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--sweeps=", 9) == 0) {
      sweeps = std::max(1, std::atoi(argv[i] + 9));
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  print_context();
  for (int sweep = 1; sweep <= sweeps; ++sweep) {
    const std::string tag = "sweep:" + std::to_string(sweep) + "/";
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(
          (tag + "peak_sgemm_2048/threads:" + std::to_string(threads)).c_str(), BM_PeakSgemm,
          threads)
          ->UseManualTime()
          ->Iterations(5)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(
          (tag + "memory_read_512MiB/threads:" + std::to_string(threads)).c_str(), BM_ReadBandwidth,
          threads)
          ->UseManualTime()
          ->Iterations(5)
          ->Unit(benchmark::kMillisecond);
    }
    for (int threads : {1, 2})
      for (bool skewed : {false, true})
        for (int per_expert : kCpuTokensPerExpert) {
          const std::string name = std::string(skewed ? "skewed" : "balanced") +
                                   "/tokens_per_expert:" + std::to_string(per_expert) +
                                   "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark((tag + name).c_str(), BM_ExpertFfn, name, per_expert, skewed,
                                       threads)
              ->UseManualTime()
              ->Iterations(kIterations)
              ->Unit(benchmark::kMicrosecond);
        }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_table();
  return 0;
}
