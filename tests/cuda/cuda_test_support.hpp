// What the CUDA tests share: the skip when there is no GPU, device arrays that are poisoned
// (NaN-filled) before a kernel writes them, fresh random inputs with their seed in the trace, and
// the error measures the tolerances are stated in.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_check.hpp"
#include "runtime/cuda/cuda_device.hpp"

// Without a driver or a device (CI, developer machines), every GPU test skips and says why.
#define MOE_SKIP_WITHOUT_GPU()                                                  \
  do {                                                                          \
    if (::moe::cuda_device_count() == 0)                                        \
      GTEST_SKIP() << "no CUDA device (" << ::moe::cuda_unavailable_reason()    \
                   << "): this test needs a GPU; see tests/cuda/run_on_gpu.sh"; \
  } while (0)

namespace moe::test {

// A device array of T that frees itself. poison() fills it with 0xFF bytes: NaN as float32 and
// bfloat16, -1 as int, 255 as uint8 — so an element no kernel wrote fails the comparison.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    CUDA_CHECK(cudaMalloc(&data_, std::max<size_t>(count, 1) * sizeof(T)));
    poison();
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(data_); }

  T* get() const { return data_; }
  size_t size() const { return count_; }
  void poison() { CUDA_CHECK(cudaMemset(data_, 0xFF, std::max<size_t>(count_, 1) * sizeof(T))); }
  void upload(const std::vector<T>& host) {
    CUDA_CHECK(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  // Waits for all prior work on the device, so a kernel's launch or run error shows up here.
  std::vector<T> download() const {
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> host(count_);
    CUDA_CHECK(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

// A fresh seed per test, printed with any failure so it can be replayed.
class Random {
 public:
  Random() : seed_(std::random_device{}()), engine_(seed_) {}
  unsigned seed() const { return seed_; }
  std::vector<float> normal(size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(engine_);
    return v;
  }
  std::vector<float> uniform(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(engine_);
    return v;
  }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }
  std::mt19937& engine() { return engine_; }

 private:
  unsigned seed_;
  std::mt19937 engine_;
};

#define MOE_TRACE_SEED(rng) SCOPED_TRACE("random seed " + std::to_string((rng).seed()))

// ‖out − ref‖ / ‖ref‖ (Frobenius); +inf when out holds a NaN or an infinity.
template <typename Out, typename Ref>
double relative_error(const std::vector<Out>& out, const std::vector<Ref>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double o = double(out[i]), r = double(ref[i]);
    if (!std::isfinite(o)) return std::numeric_limits<double>::infinity();
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// max |out − ref|; +inf when out holds a NaN or an infinity.
template <typename Out, typename Ref>
double max_abs_diff(const std::vector<Out>& out, const std::vector<Ref>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double o = double(out[i]), r = double(ref[i]);
    if (!std::isfinite(o)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(o - r));
  }
  return worst;
}

inline std::vector<float> to_float(const std::vector<gpu::bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = gpu::to_float(v[i]);
  return out;
}

inline std::vector<gpu::bf16> to_bf16(const std::vector<float>& v) {
  std::vector<gpu::bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = gpu::to_bf16(v[i]);
  return out;
}

}  // namespace moe::test
