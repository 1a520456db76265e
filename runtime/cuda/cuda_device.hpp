// The CUDA device: cuBLAS for every matrix product, on one stream of its own. Plain C++ (no CUDA
// header), so device.cpp and the rank code include it without nvcc.
//
// Two ways in:
//  * the Device interface (HOST pointers): activations are staged through pinned buffers that only
//    grow, copied in, computed, copied out; the call returns when y is on the host.
//  * the device-pointer API (expert_ffn_device, alloc/copy): for token blocks that arrive in GPU
//    memory over NCCL. Asynchronous on stream(); synchronize() before reading results on the host.
//
// Weights are keyed by their HOST pointer: uploaded on first use and cached on the GPU for the
// device's lifetime, so a weight buffer must stay alive and unchanged while the device may use it
// (the model's weights do: they live for the whole run). evict_weight() forgets one. Under an
// expert memory budget a swapper thread uploads and drops experts beside the compute thread: the
// cache is locked from a lookup to the launch of the work on it, and uploads run on a copy stream.
//
// Precision: "cuda:N" is float32 throughout (cuBLAS FP32, no TF32). "cuda:N:bf16" stores expert
// weights (wi, wo) in bfloat16 and runs the expert GEMMs on bf16 activations with float32
// accumulation and float32 output; linear() (attention projections, router, lm_head) stays float32
// so that router decisions keep Hugging Face's float32 router semantics.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_types.hpp"
#include "runtime/device.hpp"

namespace moe {

enum class CudaPrecision { f32, bf16 };

// How the expert groups' GEMMs are issued (runtime/cuda/expert_ffn.hpp): one
// cublasGemmGroupedBatchedEx per projection, or one GEMM → ReLU → GEMM chain per expert spread
// over side streams. Same results; `automatic` picks per call from the precision and the rows
// per expert, whichever path bench_cuda_expert_gemm found faster there (docs/CUDA.md).
enum class ExpertGemm { automatic, grouped, per_group };

// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int cuda_device_count();
// The reason cuda_device_count() is 0, for skip and error messages ("" when a device exists).
std::string cuda_unavailable_reason();

// "" or "f32" → f32, "bf16" → bf16; anything else is a moe::Error naming the spec.
CudaPrecision parse_cuda_precision(const std::string& suffix);

class CudaDevice final : public Device {
 public:
  CudaDevice(int index, CudaPrecision precision = CudaPrecision::f32);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  std::string name() const override;  // "cuda:0" or "cuda:0:bf16"
  void linear(const float* x, const float* w, float* y, int M, int N, int K,
              bool accumulate) override;
  void expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y, int d_model,
                  int d_ff) override;

  // ---- device-pointer API (stream-ordered on stream()) ----

  // expert_ffn on DEVICE rows: d_x/d_y hold rows [first_row, first_row + rows) of each group;
  // rows outside every group are neither read nor written. The groups' weights are HOST pointers
  // (the cache keys), uploaded on first use.
  void expert_ffn_device(const std::vector<ExpertGroup>& groups, const float* d_x, float* d_y,
                         int d_model, int d_ff);
  // y[M, N] = x[M, K] · w[N, K]^T (+ y) on DEVICE x/y; w is a HOST pointer (cache key).
  void linear_device(const float* d_x, const float* w, float* d_y, int M, int N, int K,
                     bool accumulate);
  // Upload an expert's weights now (e.g. ahead of a layer) instead of on first use.
  void prefetch_expert(const ExpertWeights& weights, int d_model, int d_ff);
  // Forget one cached weight (its GPU copy is freed after pending work finishes). Thread-safe.
  void evict_weight(const float* host_weight);
  size_t cached_weight_bytes() const;

  // ---- experts under a memory budget (runtime/expert_tier.hpp); thread-safe ----
  // Copies one expert's weights to the device on the device's copy stream (converted to bf16
  // there for a bf16 device); the compute stream waits for the copy where it first uses them.
  // With `wait` (the swapper's: "loaded" then means loaded, and its time is the copy's) it
  // returns when the copy is done, else once it is queued. Nothing for a weight already cached.
  void upload_expert_async(const ExpertWeights& weights, int d_model, int d_ff, bool wait = false);
  // Frees one expert's device copies once the work queued on them has finished.
  void drop_expert(const ExpertWeights& weights);
  // Registers [host, host + bytes) for DMA (cudaHostRegister, read-only); false where the system
  // refuses (the copies then go through the driver's staging). unpin_host_range undoes one.
  bool pin_host_range(const void* host, size_t bytes);
  void unpin_host_range(const void* host);
  size_t pinned_host_bytes() const;
  // Memory in use on this GPU, every process's (cudaMemGetInfo: total - free).
  uint64_t device_memory_used() const;

  float* alloc_floats(size_t count);  // cudaMalloc: for buffers sized once, not per call
  void free_floats(float* device_ptr);
  void copy_to_device(float* d_dst, const float* h_src, size_t count);  // async on stream()
  void copy_to_host(float* h_dst, const float* d_src, size_t count);    // async on stream()
  void synchronize();
  gpu::Stream stream() const;

  // Which GEMM issue path expert_ffn uses (default automatic), and over how many side streams
  // (1..8, default 4) per_group spreads the experts; 1 keeps them on stream().
  void set_expert_gemm(ExpertGemm path, int streams = 4);
  ExpertGemm expert_gemm() const;
  int expert_streams() const;
  CudaPrecision precision() const;
  int index() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<Device> make_cuda_device(int index, CudaPrecision precision = CudaPrecision::f32);

}  // namespace moe
