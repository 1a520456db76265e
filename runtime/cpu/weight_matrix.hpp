// A weight matrix w[N, K] (Hugging Face's Linear layout) in one of the storage formats the CPU
// kernels read: float32 as loaded, bfloat16 (the upper half of each float32, rounded to nearest
// even: half the bytes), or int8 with one float32 scale per output row (symmetric, w ≈ scale[n] ·
// q[n, k]: a quarter of the bytes). The kernels widen each element to float32 in registers and
// accumulate in float32; int8 sums x · q and multiplies by the row's scale at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/cpu/weight_storage.hpp"

namespace moe {

enum class WeightFormat { kF32, kBf16, kInt8 };

// "f32", "bf16", "int8" (anything else is a moe::Error naming `what`).
WeightFormat parse_weight_format(const std::string& name, const std::string& what);
const char* weight_format_name(WeightFormat format);

// How a matrix's elements lie: HF's rows (each output's K weights together), or float32 in panels
// of 48 outputs for panel_gemm (runtime/cpu/panel_gemm.hpp).
enum class WeightLayout { kRows, kPanels };

// A view: rows of `data` are K elements apart; `scales` (int8 only) holds one float per row. With
// layout kPanels (float32, or bf16 / int8 for their dot-product kernels), `data` is the first
// panel, and views start at a panel's first row.
struct WeightMatrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;
  const float* scales = nullptr;
  const int32_t* sums = nullptr;  // int8: each row's sum of weights (for int8 activations)
  WeightLayout layout = WeightLayout::kRows;

  // The view from row `n` on (a block of output rows, e.g. a slice of the lm_head).
  WeightMatrix rows_from(size_t n, size_t K) const;
  // Rows [n0, n1) widened to float32 into out[(n1 - n0) * K].
  void widen(size_t n0, size_t n1, size_t K, float* out) const;
};

// Storage for weights: aligned to cache lines, so a kernel's 64-byte loads of a row never straddle
// two lines (std::vector's large blocks start 16 bytes into a page), and large blocks on huge pages
// (runtime/cpu/weight_storage.hpp).
template <class T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() = default;
  template <class U>
  WeightAllocator(const WeightAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_weight_bytes(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { free_weight_bytes(p, n * sizeof(T)); }
  bool operator==(const WeightAllocator&) const { return true; }
};
template <class T>
using AlignedVector = std::vector<T, WeightAllocator<T>>;

// A copy of a float32 matrix, converted to `format`, that owns its storage: float32 is laid out in
// panels (the layout panel_gemm reads); bf16 and int8 keep HF's rows, or with `layout` kPanels lie
// in the panels of their dot-product kernels (bf16_gemm_dot_panels, int8_gemm_vnni_panels).
class StoredWeight {
 public:
  StoredWeight(WeightFormat format, const float* w, size_t N, size_t K,
               WeightLayout layout = WeightLayout::kRows);
  WeightMatrix view() const { return {format_, data(), scales_.data(), sums_.data(), layout_}; }
  size_t rows() const { return N_; }
  size_t bytes() const {
    return panels_.size() * 4 + bf16_.size() * 2 + int8_.size() + scales_.size() * 4 +
           sums_.size() * 4;
  }

 private:
  const void* data() const;
  WeightFormat format_;
  WeightLayout layout_ = WeightLayout::kRows;
  size_t N_;
  AlignedVector<float> panels_;
  AlignedVector<uint16_t> bf16_;
  AlignedVector<int8_t> int8_;
  std::vector<float> scales_;
  std::vector<int32_t> sums_;
};

// The largest |v| of n floats: NaN when any is NaN (once seen, it sticks), infinity when any is
// infinite — the scale of a symmetric int8 quantisation, and how it learns the row is not finite.
inline float largest_magnitude(const float* v, size_t n) {
  float largest = 0;
  for (size_t i = 0; i < n; ++i) {
    const float a = v[i] < 0 ? -v[i] : v[i];
    largest = a > largest || a != a ? a : largest;
  }
  return largest;
}

// The bfloat16 of a float, rounded to nearest even (NaN stays NaN).
uint16_t to_bf16(float f);
inline float from_bf16(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace moe
