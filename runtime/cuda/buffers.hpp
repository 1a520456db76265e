// Grow-only buffers for the CUDA device: device memory and pinned host memory that are sized by
// the largest call so far and reused, so the hot path allocates nothing per call.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "runtime/cuda/cuda_check.hpp"

namespace moe::gpu {

// Growing frees the old block after the stream's pending work, which may still read it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }

  template <typename T>
  T* ensure(size_t count, cudaStream_t stream) {
    const size_t bytes = count * sizeof(T);
    if (bytes > bytes_) {
      CUDA_CHECK(cudaStreamSynchronize(stream));
      CUDA_CHECK(cudaFree(data_));
      data_ = nullptr;
      bytes_ = 0;
      const size_t grown = bytes + bytes / 4;  // a little headroom: batches vary in size
      CUDA_CHECK(cudaMalloc(&data_, grown));
      bytes_ = grown;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Callers must know the stream has finished with the old contents before growing or rewriting.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() { cudaFreeHost(data_); }

  template <typename T>
  T* ensure(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes > bytes_) {
      CUDA_CHECK(cudaFreeHost(data_));
      data_ = nullptr;
      bytes_ = 0;
      const size_t grown = bytes + bytes / 4;
      CUDA_CHECK(cudaHostAlloc(&data_, grown, cudaHostAllocDefault));
      bytes_ = grown;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace moe::gpu
