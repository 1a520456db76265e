// The expert FFN (wi GEMM → ReLU → wo GEMM over every expert group) on the GPU, for
// switch-base-8 shapes: d_model 768, d_ff 3072, 8 experts, 16..4096 tokens per expert, balanced and
// skewed, float32 and bf16, through CudaDevice::expert_ffn_device on each GEMM issue path (one
// grouped cuBLAS call per projection; one GEMM chain per expert on 1 stream or on 4 side streams).
//
// Beside each figure, the peer: cuBLAS's rate for ONE plain GEMM of the same total FLOPs
// ([2·rows, 768] · [768, 3072]^T, same precision), and ours / peer. Small batches are bound by
// reading the weights (151 MB in fp32 per layer), so the weight bandwidth is shown too.
// Timing: CUDA events around each call on the device's stream, median of the iterations, after
// warm-up, on random (never zero) data. Usage: bench_cuda_expert_gemm [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_check.hpp"
#include "runtime/cuda/cuda_device.hpp"
#include "tests/bench/expert_shapes.hpp"

namespace moe {
namespace {

using namespace expert_shapes;
constexpr int kMaxTokensPerExpert = kCudaTokensPerExpert.back();
constexpr int kMaxRows = kExperts * kMaxTokensPerExpert;
constexpr int kIterations = 30;
// H100 SXM5 80 GB datasheet, dense: the context for the figures.
constexpr double kPeakFp32 = 66.9, kPeakTf32 = 494.7, kPeakBf16 = 989.4, kPeakHbmTBs = 3.35;

// Uniform in [-scale/2, scale/2) from a hash of the index: random, never zero, no host copy.
template <typename T>
__global__ void fill_random(T* x, size_t n, unsigned seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    x[i] = T(scale * (float(h & 0xffffff) / float(0x1000000) - 0.5f));
  }
}

template <typename T>
T* random_buffer(size_t n, unsigned seed, float scale) {
  T* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, n * sizeof(T)));
  fill_random<<<1024, 256>>>(d, n, seed, scale);
  CUDA_CHECK_LAUNCH();
  return d;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Everything the benchmarks share, made once: host weights (the cache keys), one device per
// precision (weights uploaded on first use), device activations, and the peer's buffers.
struct Setup {
  std::vector<std::vector<float>> wi, wo;
  std::unique_ptr<CudaDevice> f32, bf16;
  float* d_x = nullptr;
  float* d_y = nullptr;
  // The peer GEMM's operands in each precision: a[2·kMaxRows, d_model], w[d_ff, d_model],
  // c[2·kMaxRows, d_ff].
  float *peer_a = nullptr, *peer_w = nullptr, *peer_c = nullptr;
  __nv_bfloat16 *peer_a16 = nullptr, *peer_w16 = nullptr, *peer_c16 = nullptr;
  cublasHandle_t cublas = nullptr;
  cudaStream_t stream = nullptr;
  std::map<std::pair<int, bool>, double> peer_tflops;  // (rows, bf16) → TFLOP/s

  Setup() {
    std::mt19937 rng(1234);
    std::normal_distribution<float> dist(0.0f, 0.03f);
    for (int e = 0; e < kExperts; ++e) {
      wi.emplace_back(size_t(kDff) * kDModel);
      wo.emplace_back(size_t(kDModel) * kDff);
      for (float& v : wi.back()) v = dist(rng);
      for (float& v : wo.back()) v = dist(rng);
    }
    f32 = std::make_unique<CudaDevice>(0, CudaPrecision::f32);
    bf16 = std::make_unique<CudaDevice>(0, CudaPrecision::bf16);
    const size_t a = size_t(2) * kMaxRows * kDModel, w = size_t(kDff) * kDModel;
    const size_t c = size_t(2) * kMaxRows * kDff;
    d_x = random_buffer<float>(size_t(kMaxRows) * kDModel, 1, 2.0f);
    d_y = random_buffer<float>(size_t(kMaxRows) * kDModel, 2, 1.0f);
    peer_a = random_buffer<float>(a, 3, 2.0f);
    peer_w = random_buffer<float>(w, 4, 0.1f);
    peer_c = random_buffer<float>(c, 5, 1.0f);
    peer_a16 = random_buffer<__nv_bfloat16>(a, 3, 2.0f);
    peer_w16 = random_buffer<__nv_bfloat16>(w, 4, 0.1f);
    peer_c16 = random_buffer<__nv_bfloat16>(c, 5, 1.0f);
    CUDA_CHECK(cudaStreamCreate(&stream));
    CUBLAS_CHECK(cublasCreate(&cublas));
    CUBLAS_CHECK(cublasSetStream(cublas, stream));
    CUDA_CHECK(cudaDeviceSynchronize());
  }

  // cuBLAS's rate for one [M, K]·[N, K]^T GEMM, median of 20 after 3 warm-ups.
  double gemm_tflops(int M, int N, int K, bool use_bf16) {
    const float alpha = 1.0f, beta = 0.0f;
    auto run = [&] {
      if (use_bf16)
        CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, peer_w16,
                                  CUDA_R_16BF, K, peer_a16, CUDA_R_16BF, K, &beta, peer_c16,
                                  CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      else
        CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, peer_w, K,
                                 peer_a, K, &beta, peer_c, N));
    };
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < 3; ++i) run();
    std::vector<double> seconds;
    for (int i = 0; i < 20; ++i) {
      CUDA_CHECK(cudaEventRecord(start, stream));
      run();
      CUDA_CHECK(cudaEventRecord(stop, stream));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      seconds.push_back(ms * 1e-3);
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return 2.0 * M * N * K / median(seconds) / 1e12;
  }

  double peer(int rows, bool use_bf16) {
    auto key = std::make_pair(rows, use_bf16);
    auto it = peer_tflops.find(key);
    if (it == peer_tflops.end())
      it = peer_tflops.emplace(key, gemm_tflops(2 * rows, kDff, kDModel, use_bf16)).first;
    return it->second;
  }
};

// Never destroyed: freeing CUDA objects from a static destructor races the runtime's own exit.
Setup& setup() {
  static Setup* s = new Setup;
  return *s;
}

struct Row {
  std::string name;
  double median_us, tflops, peer_tflops, weight_tbs;
};
std::vector<Row> g_rows;

void BM_ExpertFfn(benchmark::State& state, const std::string& name, int per_expert, bool skewed,
                  bool use_bf16, ExpertGemm path, int streams) {
  Setup& s = setup();
  CudaDevice& device = use_bf16 ? *s.bf16 : *s.f32;
  device.set_expert_gemm(path, streams);
  const auto counts = token_counts(per_expert, skewed);
  std::vector<ExpertGroup> groups;
  int rows = 0;
  for (int e = 0; e < kExperts; ++e) {
    groups.push_back({{s.wi[e].data(), s.wo[e].data()}, rows, counts[e]});
    rows += counts[e];
  }
  auto run = [&] { device.expert_ffn_device(groups, s.d_x, s.d_y, kDModel, kDff); };
  for (int i = 0; i < 3; ++i) run();  // uploads the weights on the first call
  device.synchronize();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> seconds;
  for (auto _ : state) {
    CUDA_CHECK(cudaEventRecord(start, device.stream()));
    run();
    CUDA_CHECK(cudaEventRecord(stop, device.stream()));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
    seconds.push_back(ms * 1e-3);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  const double t = median(seconds);
  const double flops = 4.0 * rows * kDModel * kDff;
  const double weight_bytes = 2.0 * kExperts * kDModel * kDff * (use_bf16 ? 2 : 4);
  const double tflops = flops / t / 1e12, peer = s.peer(rows, use_bf16);
  state.counters["TFLOP/s"] = tflops;
  state.counters["peer_TFLOP/s"] = peer;
  state.counters["ratio"] = tflops / peer;
  state.counters["weights_TB/s"] = weight_bytes / t / 1e12;
  g_rows.push_back({name, t * 1e6, tflops, peer, weight_bytes / t / 1e12});
}

void print_context() {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int cublas_version = 0;
  CUBLAS_CHECK(cublasGetVersion(setup().cublas, &cublas_version));
  std::printf("device: %s, %d SMs, %.0f MiB, cuBLAS %d\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / 1048576.0, cublas_version);
  std::printf(
      "H100 SXM5 datasheet peaks (dense): FP32 %.1f, TF32 %.1f, BF16 %.1f TFLOP/s; HBM3 "
      "%.2f TB/s\n",
      kPeakFp32, kPeakTf32, kPeakBf16, kPeakHbmTBs);
  std::printf(
      "cuBLAS, one [65536, 768]·[3072, 768]^T GEMM (the largest peer): FP32 %.1f, "
      "BF16 %.1f TFLOP/s\n",
      setup().peer(kMaxRows, false), setup().peer(kMaxRows, true));
}

void print_table() {
  std::printf("\n%-52s %10s %9s %9s %7s %10s\n", "expert FFN (d_model 768, d_ff 3072, 8 experts)",
              "median_us", "TFLOP/s", "peer", "ratio", "weight TB/s");
  for (const Row& r : g_rows)
    std::printf("%-52s %10.1f %9.1f %9.1f %7.2f %10.2f\n", r.name.c_str(), r.median_us, r.tflops,
                r.peer_tflops, r.tflops / r.peer_tflops, r.weight_tbs);
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  using namespace moe;
  if (cuda_device_count() == 0) {
    std::printf("bench_cuda_expert_gemm: no CUDA device (%s); nothing to measure\n",
                cuda_unavailable_reason().c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  print_context();
  for (bool use_bf16 : {false, true})
    for (bool skewed : {false, true})
      for (int per_expert : kCudaTokensPerExpert)
        for (auto [path, streams] : {std::pair{ExpertGemm::grouped, 1},
                                     {ExpertGemm::per_group, 1},
                                     {ExpertGemm::per_group, 4}}) {
          const std::string name =
              std::string(use_bf16 ? "bf16" : "fp32") + (skewed ? "/skewed" : "/balanced") +
              "/tokens_per_expert:" + std::to_string(per_expert) +
              (path == ExpertGemm::grouped ? "/grouped"
                                           : "/per_group_" + std::to_string(streams) + "stream");
          benchmark::RegisterBenchmark(name.c_str(), BM_ExpertFfn, name, per_expert, skewed,
                                       use_bf16, path, streams)
              ->UseManualTime()
              ->Iterations(kIterations)
              ->Unit(benchmark::kMicrosecond);
        }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_table();
  return 0;
}
