// The CUDA device (interface and contracts in cuda_device.hpp): a weight cache keyed by host
// pointer, grow-only pinned staging for the host-pointer API, and the choice of GEMM issue path;
// the expert FFN itself runs in expert_ffn.cu.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "runtime/cuda/buffers.hpp"
#include "runtime/cuda/cuda_check.hpp"
#include "runtime/cuda/cuda_device.hpp"
#include "runtime/cuda/expert_ffn.hpp"
#include "runtime/cuda/gemm.hpp"
#include "runtime/cuda/kernels.hpp"

namespace moe {
namespace {

using gpu::bf16;
using gpu::DeviceBuffer;
using gpu::GemmTypes;
using gpu::PinnedBuffer;

struct CachedWeight {
  void* data = nullptr;  // float or bf16, [elements]
  size_t elements = 0;
  bool bf16 = false;
  // Uploaded on the copy stream (upload_expert_async): the compute stream waits for it at first
  // use, then it is destroyed. null: uploaded on the compute stream itself.
  cudaEvent_t copied = nullptr;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(status) + " (" +
           cudaGetErrorString(status) + ")";
  }
  return count == 0 ? "cudaGetDeviceCount found no CUDA device" : "";
}

CudaPrecision parse_cuda_precision(const std::string& suffix) {
  if (suffix.empty() || suffix == "f32") return CudaPrecision::f32;
  if (suffix == "bf16") return CudaPrecision::bf16;
  MOE_FAIL("cuda device precision '", suffix, "': expected f32 or bf16");
}

struct CudaDevice::Impl {
  int index = 0;
  CudaPrecision precision = CudaPrecision::f32;
  ExpertGemm gemm_path = ExpertGemm::automatic;
  int expert_streams = 4;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  // The cache and its byte count. Locked by every use on the compute thread, from the lookup to
  // the launch of the work that reads the copy, and by the swapper's uploads and drops, so that a
  // copy is never freed between its lookup and the work queued on it.
  std::mutex cache_mutex;
  std::unordered_map<const float*, CachedWeight> weights;
  size_t weight_bytes = 0;
  DeviceBuffer upload;  // float32 staging for weights converted to bf16 on the GPU
  // The swapper's uploads: their own stream and bf16 staging (one swapper thread at a time).
  cudaStream_t copy_stream = nullptr;
  DeviceBuffer copy_upload;
  std::mutex copy_mutex;
  std::unordered_map<const void*, size_t> pinned;  // host ranges registered for DMA, and bytes

  DeviceBuffer x_dev, y_dev;       // activations of the host-pointer API
  PinnedBuffer in_host, out_host;  // their pinned staging
  std::unique_ptr<gpu::ExpertFfnRunner> runner;
  std::vector<gpu::DeviceExpertGroup> device_groups;  // reused across calls
  std::vector<std::pair<int, int>> ranges;

  void use() const { CUDA_CHECK(cudaSetDevice(index)); }

  // The device copy of a host weight, uploaded (and converted) on first use. cache_mutex held.
  const void* weight(const float* host, size_t elements, bool as_bf16) {
    MOE_CHECK(host != nullptr, name(), ": null weight pointer");
    auto it = weights.find(host);
    if (it != weights.end()) {
      MOE_CHECK(it->second.elements == elements && it->second.bf16 == as_bf16, name(),
                ": weight at ", static_cast<const void*>(host), " was cached as ",
                it->second.elements, " elements and is now used as ", elements,
                " (weights must stay alive and unchanged; evict_weight() a reused buffer)");
      if (it->second.copied) {  // the swapper's copy: this stream waits for it, once
        CUDA_CHECK(cudaStreamWaitEvent(stream, it->second.copied, 0));
        CUDA_CHECK(cudaEventDestroy(it->second.copied));
        it->second.copied = nullptr;
      }
      return it->second.data;
    }
    CachedWeight w{nullptr, elements, as_bf16};
    const size_t bytes = elements * (as_bf16 ? sizeof(bf16) : sizeof(float));
    CUDA_CHECK(cudaMalloc(&w.data, bytes));
    if (as_bf16) {
      float* staged = upload.ensure<float>(elements, stream);
      CUDA_CHECK(
          cudaMemcpyAsync(staged, host, elements * sizeof(float), cudaMemcpyHostToDevice, stream));
      gpu::convert(staged, static_cast<bf16*>(w.data), elements, stream);
    } else {
      CUDA_CHECK(cudaMemcpyAsync(w.data, host, bytes, cudaMemcpyHostToDevice, stream));
    }
    weights.emplace(host, w);
    weight_bytes += bytes;
    return w.data;
  }

  std::string name() const {
    return "cuda:" + std::to_string(index) + (precision == CudaPrecision::bf16 ? ":bf16" : "");
  }

  void linear(const float* d_x, const float* w, float* d_y, int M, int N, int K, bool accumulate) {
    MOE_CHECK(M >= 0 && N >= 0 && K >= 0, name(), ": linear: bad shape ", M, "x", N, "x", K);
    if (M == 0 || N == 0) return;
    std::lock_guard<std::mutex> lock(cache_mutex);
    const void* d_w = weight(w, size_t(N) * K, false);
    gpu::gemm(cublas, GemmTypes::f32, {d_w, d_x, d_y, M, N, K}, accumulate ? 1.0f : 0.0f);
  }

  // float32 → per-expert GEMMs on side streams: in float32 the grouped call is never faster.
  // bf16 → one grouped GEMM while experts are small (≤ 512 rows on average), where one launch
  // beats many small ones; per-expert GEMMs above, where cuBLAS's grouped bf16 kernels fall
  // behind. Figures: docs/CUDA.md (bench_cuda_expert_gemm).
  ExpertGemm resolve_path(size_t total_rows, size_t active_groups) const {
    if (gemm_path != ExpertGemm::automatic) return gemm_path;
    if (precision == CudaPrecision::f32 || !gpu::grouped_gemm_available())
      return ExpertGemm::per_group;
    return total_rows <= 512 * active_groups ? ExpertGemm::grouped : ExpertGemm::per_group;
  }

  void expert_ffn(const std::vector<ExpertGroup>& groups, const float* d_x, float* d_y, int d_model,
                  int d_ff) {
    const bool as_bf16 = precision == CudaPrecision::bf16;
    std::lock_guard<std::mutex> lock(cache_mutex);
    device_groups.clear();
    size_t total_rows = 0;
    for (const ExpertGroup& g : groups) {
      MOE_CHECK(g.rows >= 0 && g.first_row >= 0, name(), ": expert_ffn: bad group (first_row ",
                g.first_row, ", rows ", g.rows, ")");
      if (g.rows == 0) continue;
      device_groups.push_back({weight(g.weights.wi, size_t(d_ff) * d_model, as_bf16),
                               weight(g.weights.wo, size_t(d_model) * d_ff, as_bf16), g.first_row,
                               g.rows});
      total_rows += size_t(g.rows);
    }
    if (device_groups.empty()) return;
    if (!runner) runner = std::make_unique<gpu::ExpertFfnRunner>(stream, cublas);
    runner->run(device_groups, d_x, d_y, d_model, d_ff, as_bf16,
                resolve_path(total_rows, device_groups.size()), expert_streams);
  }
};

CudaDevice::CudaDevice(int index, CudaPrecision precision) : impl_(std::make_unique<Impl>()) {
  const int count = cuda_device_count();
  MOE_CHECK(count > 0, "device 'cuda:", index, "': no CUDA device available (",
            cuda_unavailable_reason(), ")");
  MOE_CHECK(index >= 0 && index < count, "device 'cuda:", index, "': index out of range (", count,
            " CUDA device(s))");
  impl_->index = index;
  impl_->precision = precision;
  impl_->use();
  CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->copy_stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&impl_->cublas));
  CUBLAS_CHECK(cublasSetStream(impl_->cublas, impl_->stream));
}

// Best effort, never throws: the stream's work finishes before anything it may use is freed.
CudaDevice::~CudaDevice() {
  if (!impl_) return;
  cudaSetDevice(impl_->index);
  if (impl_->stream) cudaStreamSynchronize(impl_->stream);
  if (impl_->copy_stream) cudaStreamSynchronize(impl_->copy_stream);
  for (auto& [host, w] : impl_->weights) {
    if (w.copied) cudaEventDestroy(w.copied);
    cudaFree(w.data);
  }
  for (auto& [host, bytes] : impl_->pinned) cudaHostUnregister(const_cast<void*>(host));
  impl_->runner.reset();
  if (impl_->cublas) cublasDestroy(impl_->cublas);
  if (impl_->copy_stream) cudaStreamDestroy(impl_->copy_stream);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}  // the buffers in impl_ free themselves

std::string CudaDevice::name() const { return impl_->name(); }

void CudaDevice::linear(const float* x, const float* w, float* y, int M, int N, int K,
                        bool accumulate) {
  MOE_CHECK(M >= 0 && N >= 0 && K >= 0, name(), ": linear: bad shape ", M, "x", N, "x", K);
  if (M == 0 || N == 0) return;
  Impl& d = *impl_;
  d.use();
  const size_t x_count = size_t(M) * K, y_count = size_t(M) * N;
  float* staged = d.in_host.ensure<float>(x_count + (accumulate ? y_count : 0));
  std::memcpy(staged, x, x_count * sizeof(float));
  float* d_x = d.x_dev.ensure<float>(x_count, d.stream);
  float* d_y = d.y_dev.ensure<float>(y_count, d.stream);
  CUDA_CHECK(
      cudaMemcpyAsync(d_x, staged, x_count * sizeof(float), cudaMemcpyHostToDevice, d.stream));
  if (accumulate) {
    std::memcpy(staged + x_count, y, y_count * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(d_y, staged + x_count, y_count * sizeof(float),
                               cudaMemcpyHostToDevice, d.stream));
  }
  d.linear(d_x, w, d_y, M, N, K, accumulate);
  float* out = d.out_host.ensure<float>(y_count);
  CUDA_CHECK(cudaMemcpyAsync(out, d_y, y_count * sizeof(float), cudaMemcpyDeviceToHost, d.stream));
  CUDA_CHECK(cudaStreamSynchronize(d.stream));
  std::memcpy(y, out, y_count * sizeof(float));
}

void CudaDevice::expert_ffn(const std::vector<ExpertGroup>& groups, const float* x, float* y,
                            int d_model, int d_ff) {
  Impl& d = *impl_;
  d.use();
  std::vector<std::pair<int, int>>& ranges = d.ranges;
  gpu::covered_rows(groups, ranges);
  if (ranges.empty()) return;
  const size_t rows = size_t(ranges.back().second);
  float* staged_in = d.in_host.ensure<float>(rows * d_model);
  float* d_x = d.x_dev.ensure<float>(rows * d_model, d.stream);
  float* d_y = d.y_dev.ensure<float>(rows * d_model, d.stream);
  for (const auto& [begin, end] : ranges) {
    const size_t offset = size_t(begin) * d_model, count = size_t(end - begin) * d_model;
    std::memcpy(staged_in + offset, x + offset, count * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(d_x + offset, staged_in + offset, count * sizeof(float),
                               cudaMemcpyHostToDevice, d.stream));
  }
  d.expert_ffn(groups, d_x, d_y, d_model, d_ff);
  float* staged_out = d.out_host.ensure<float>(rows * d_model);
  for (const auto& [begin, end] : ranges) {
    const size_t offset = size_t(begin) * d_model, count = size_t(end - begin) * d_model;
    CUDA_CHECK(cudaMemcpyAsync(staged_out + offset, d_y + offset, count * sizeof(float),
                               cudaMemcpyDeviceToHost, d.stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(d.stream));
  for (const auto& [begin, end] : ranges) {
    const size_t offset = size_t(begin) * d_model, count = size_t(end - begin) * d_model;
    std::memcpy(y + offset, staged_out + offset, count * sizeof(float));
  }
}

void CudaDevice::expert_ffn_device(const std::vector<ExpertGroup>& groups, const float* d_x,
                                   float* d_y, int d_model, int d_ff) {
  impl_->use();
  impl_->expert_ffn(groups, d_x, d_y, d_model, d_ff);
}

void CudaDevice::linear_device(const float* d_x, const float* w, float* d_y, int M, int N, int K,
                               bool accumulate) {
  impl_->use();
  impl_->linear(d_x, w, d_y, M, N, K, accumulate);
}

void CudaDevice::prefetch_expert(const ExpertWeights& weights, int d_model, int d_ff) {
  impl_->use();
  const bool as_bf16 = impl_->precision == CudaPrecision::bf16;
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  impl_->weight(weights.wi, size_t(d_ff) * d_model, as_bf16);
  impl_->weight(weights.wo, size_t(d_model) * d_ff, as_bf16);
}

void CudaDevice::evict_weight(const float* host_weight) {
  Impl& d = *impl_;
  CachedWeight w;
  {
    std::lock_guard<std::mutex> lock(d.cache_mutex);
    auto it = d.weights.find(host_weight);
    if (it == d.weights.end()) return;
    w = it->second;
    d.weight_bytes -= w.elements * (w.bf16 ? sizeof(bf16) : sizeof(float));
    d.weights.erase(it);
  }
  d.use();
  // Every use of the copy was queued on the compute stream before the erase (under the lock).
  CUDA_CHECK(cudaStreamSynchronize(d.stream));
  if (w.copied) CUDA_CHECK(cudaEventSynchronize(w.copied));
  if (w.copied) CUDA_CHECK(cudaEventDestroy(w.copied));
  CUDA_CHECK(cudaFree(w.data));
}

size_t CudaDevice::cached_weight_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  return impl_->weight_bytes;
}

void CudaDevice::upload_expert_async(const ExpertWeights& weights, int d_model, int d_ff,
                                     bool wait) {
  Impl& d = *impl_;
  d.use();
  const bool as_bf16 = d.precision == CudaPrecision::bf16;
  const size_t elements = size_t(d_ff) * d_model;
  std::lock_guard<std::mutex> copying(d.copy_mutex);  // one upload at a time on the copy stream
  for (const float* host : {weights.wi, weights.wo}) {
    MOE_CHECK(host != nullptr, name(), ": upload_expert_async: null weight pointer");
    {
      std::lock_guard<std::mutex> lock(d.cache_mutex);
      if (d.weights.count(host)) continue;
    }
    // The copy is queued without the cache lock: from pageable memory the call itself copies.
    CachedWeight w{nullptr, elements, as_bf16, nullptr};
    const size_t bytes = elements * (as_bf16 ? sizeof(bf16) : sizeof(float));
    CUDA_CHECK(cudaMalloc(&w.data, bytes));
    try {
      if (as_bf16) {
        float* staged = d.copy_upload.ensure<float>(elements, d.copy_stream);
        CUDA_CHECK(cudaMemcpyAsync(staged, host, elements * sizeof(float), cudaMemcpyHostToDevice,
                                   d.copy_stream));
        gpu::convert(staged, static_cast<bf16*>(w.data), elements, d.copy_stream);
      } else {
        CUDA_CHECK(cudaMemcpyAsync(w.data, host, bytes, cudaMemcpyHostToDevice, d.copy_stream));
      }
      CUDA_CHECK(cudaEventCreateWithFlags(&w.copied, cudaEventDisableTiming));
      CUDA_CHECK(cudaEventRecord(w.copied, d.copy_stream));
      // Before the cache lock: once inserted, the compute thread may consume and destroy the event.
      if (wait) CUDA_CHECK(cudaEventSynchronize(w.copied));
    } catch (...) {
      cudaStreamSynchronize(d.copy_stream);
      if (w.copied) cudaEventDestroy(w.copied);
      cudaFree(w.data);
      throw;
    }
    std::lock_guard<std::mutex> lock(d.cache_mutex);
    if (d.weights.count(host)) {  // the compute thread uploaded it meanwhile (a miss)
      CUDA_CHECK(cudaEventSynchronize(w.copied));
      CUDA_CHECK(cudaEventDestroy(w.copied));
      CUDA_CHECK(cudaFree(w.data));
      continue;
    }
    d.weights.emplace(host, w);
    d.weight_bytes += bytes;
  }
}

void CudaDevice::drop_expert(const ExpertWeights& weights) {
  for (const float* host : {weights.wi, weights.wo})
    if (host != nullptr) evict_weight(host);
}

bool CudaDevice::pin_host_range(const void* host, size_t bytes) {
  Impl& d = *impl_;
  d.use();
  // Read-only first (a read-only file mapping can only be pinned so), then plain (where the
  // device does not support read-only registration).
  const unsigned attempts[] = {cudaHostRegisterPortable | cudaHostRegisterReadOnly,
                               cudaHostRegisterPortable};
  for (unsigned flags : attempts) {
    if (cudaHostRegister(const_cast<void*>(host), bytes, flags) == cudaSuccess) {
      std::lock_guard<std::mutex> lock(d.copy_mutex);
      d.pinned[host] = bytes;
      return true;
    }
    cudaGetLastError();  // not sticky
  }
  return false;  // the copies go through the driver's staging instead
}

void CudaDevice::unpin_host_range(const void* host) {
  Impl& d = *impl_;
  {
    std::lock_guard<std::mutex> lock(d.copy_mutex);
    if (d.pinned.erase(host) == 0) return;
  }
  d.use();
  // Both streams may copy from pinned pages (the swapper's uploads, and a miss's in the step).
  CUDA_CHECK(cudaStreamSynchronize(d.copy_stream));
  CUDA_CHECK(cudaStreamSynchronize(d.stream));
  CUDA_CHECK(cudaHostUnregister(const_cast<void*>(host)));
}

size_t CudaDevice::pinned_host_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->copy_mutex);
  size_t bytes = 0;
  for (const auto& [host, n] : impl_->pinned) bytes += n;
  return bytes;
}

uint64_t CudaDevice::device_memory_used() const {
  impl_->use();
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return uint64_t(total_bytes - free_bytes);
}

float* CudaDevice::alloc_floats(size_t count) {
  impl_->use();
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(float)));
  return static_cast<float*>(p);
}

void CudaDevice::free_floats(float* device_ptr) {
  impl_->use();
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  CUDA_CHECK(cudaFree(device_ptr));
}

void CudaDevice::copy_to_device(float* d_dst, const float* h_src, size_t count) {
  impl_->use();
  CUDA_CHECK(
      cudaMemcpyAsync(d_dst, h_src, count * sizeof(float), cudaMemcpyHostToDevice, impl_->stream));
}

void CudaDevice::copy_to_host(float* h_dst, const float* d_src, size_t count) {
  impl_->use();
  CUDA_CHECK(
      cudaMemcpyAsync(h_dst, d_src, count * sizeof(float), cudaMemcpyDeviceToHost, impl_->stream));
}

void CudaDevice::synchronize() {
  impl_->use();
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

gpu::Stream CudaDevice::stream() const { return impl_->stream; }

void CudaDevice::set_expert_gemm(ExpertGemm path, int streams) {
  MOE_CHECK(path != ExpertGemm::grouped || gpu::grouped_gemm_available(), name(),
            ": this cuBLAS has no grouped GEMM (cublasGemmGroupedBatchedEx needs cuBLAS 12.5+)");
  MOE_CHECK(streams >= 1 && streams <= gpu::ExpertFfnRunner::kMaxStreams, name(),
            ": expert streams must be 1..", gpu::ExpertFfnRunner::kMaxStreams, ", got ", streams);
  impl_->gemm_path = path;
  impl_->expert_streams = streams;
}

ExpertGemm CudaDevice::expert_gemm() const { return impl_->gemm_path; }
int CudaDevice::expert_streams() const { return impl_->expert_streams; }
CudaPrecision CudaDevice::precision() const { return impl_->precision; }
int CudaDevice::index() const { return impl_->index; }

std::unique_ptr<Device> make_cuda_device(int index, CudaPrecision precision) {
  return std::make_unique<CudaDevice>(index, precision);
}

}  // namespace moe
