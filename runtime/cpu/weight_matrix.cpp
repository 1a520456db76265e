#include "runtime/cpu/weight_matrix.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/cpu/bf16_gemm.hpp"
#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/panel_gemm.hpp"
#include "runtime/error.hpp"

namespace moe {

WeightFormat parse_weight_format(const std::string& name, const std::string& what) {
  if (name == "f32") return WeightFormat::kF32;
  if (name == "bf16") return WeightFormat::kBf16;
  if (name == "int8") return WeightFormat::kInt8;
  MOE_FAIL(what, ": unknown weight format '", name, "' (expected f32, bf16 or int8)");
}

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32:
      return "f32";
    case WeightFormat::kBf16:
      return "bf16";
    case WeightFormat::kInt8:
      return "int8";
  }
  return "?";
}

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  // Branch-free, so that conversion loops vectorise: NaN keeps its sign and top bits, made quiet.
  const uint32_t rounded = (bits + 0x7fff + ((bits >> 16) & 1)) >> 16;
  const bool nan = (bits & 0x7fffffff) > 0x7f800000;
  return uint16_t(nan ? (bits >> 16) | 0x40 : rounded);
}

WeightMatrix WeightMatrix::rows_from(size_t n, size_t K) const {
  WeightMatrix v = *this;
  if (layout == WeightLayout::kPanels && format == WeightFormat::kBf16) {
    MOE_CHECK(n % kBf16PanelColumns == 0,
              "a view of panelled weights starts at a panel, not at row ", n);
    v.data = static_cast<const uint16_t*>(data) + n * ((K + 1) / 2 * 2);  // n / 16 panels
    return v;
  }
  if (layout == WeightLayout::kPanels && format == WeightFormat::kInt8) {
    MOE_CHECK(n % kInt8PanelColumns == 0,
              "a view of panelled weights starts at a panel, not at row ", n);
    v.data = static_cast<const int8_t*>(data) + n * ((K + 3) / 4 * 4);  // n / 16 panels
    v.scales = scales + n;
    v.sums = sums + n;
    return v;
  }
  if (layout == WeightLayout::kPanels) {
    MOE_CHECK(n % kPanelColumns == 0, "a view of panelled weights starts at a panel, not at row ",
              n);
    v.data = static_cast<const float*>(data) + n * K;  // n / 48 panels of K · 48 floats
    return v;
  }
  switch (format) {
    case WeightFormat::kF32:
      v.data = static_cast<const float*>(data) + n * K;
      break;
    case WeightFormat::kBf16:
      v.data = static_cast<const uint16_t*>(data) + n * K;
      break;
    case WeightFormat::kInt8:
      v.data = static_cast<const int8_t*>(data) + n * K;
      v.scales = scales + n;
      v.sums = sums ? sums + n : nullptr;
      break;
  }
  return v;
}

void WeightMatrix::widen(size_t n0, size_t n1, size_t K, float* out) const {
  const size_t count = (n1 - n0) * K;
  if (layout == WeightLayout::kPanels && format == WeightFormat::kBf16) {
    constexpr size_t P = kBf16PanelColumns;
    const size_t K2 = (K + 1) / 2 * 2;
    const uint16_t* panels = static_cast<const uint16_t*>(data);
    for (size_t n = n0; n < n1; ++n)
      for (size_t k = 0; k < K; ++k)
        out[(n - n0) * K + k] =
            from_bf16(panels[n / P * P * K2 + k / 2 * (P * 2) + n % P * 2 + k % 2]);
    return;
  }
  if (layout == WeightLayout::kPanels && format == WeightFormat::kInt8) {
    constexpr size_t P = kInt8PanelColumns;
    const size_t K4 = (K + 3) / 4 * 4;
    const int8_t* panels = static_cast<const int8_t*>(data);
    for (size_t n = n0; n < n1; ++n)
      for (size_t k = 0; k < K; ++k)
        out[(n - n0) * K + k] =
            scales[n] * float(panels[n / P * P * K4 + k / 4 * (P * 4) + n % P * 4 + k % 4]);
    return;
  }
  if (layout == WeightLayout::kPanels) {
    const float* panels = static_cast<const float*>(data);
    for (size_t n = n0; n < n1; ++n)
      for (size_t k = 0; k < K; ++k)
        out[(n - n0) * K + k] =
            panels[n / kPanelColumns * K * kPanelColumns + k * kPanelColumns + n % kPanelColumns];
    return;
  }
  switch (format) {
    case WeightFormat::kF32:
      std::memcpy(out, static_cast<const float*>(data) + n0 * K, count * 4);
      return;
    case WeightFormat::kBf16: {
      const uint16_t* in = static_cast<const uint16_t*>(data) + n0 * K;
      for (size_t i = 0; i < count; ++i) out[i] = from_bf16(in[i]);
      return;
    }
    case WeightFormat::kInt8:
      for (size_t n = n0; n < n1; ++n) {
        const int8_t* in = static_cast<const int8_t*>(data) + n * K;
        const float s = scales[n];
        float* row = out + (n - n0) * K;
        for (size_t k = 0; k < K; ++k) row[k] = s * float(in[k]);
      }
      return;
  }
}

StoredWeight::StoredWeight(WeightFormat format, const float* w, size_t N, size_t K,
                           WeightLayout layout)
    : format_(format), N_(N) {
  switch (format) {
    case WeightFormat::kF32:
      panels_ = pack_panels(w, N, K);
      layout_ = WeightLayout::kPanels;
      return;
    case WeightFormat::kBf16:
      bf16_.resize(N * K);
      for (size_t i = 0; i < N * K; ++i) bf16_[i] = to_bf16(w[i]);
      if (layout == WeightLayout::kPanels) {
        bf16_ = pack_bf16_panels(bf16_.data(), N, K);
        layout_ = WeightLayout::kPanels;
      }
      return;
    case WeightFormat::kInt8:
      int8_.resize(N * K);
      scales_.resize(N);
      sums_.resize(N);
      for (size_t n = 0; n < N; ++n) {
        const float* row = w + n * K;
        const float largest = largest_magnitude(row, K);
        MOE_CHECK(std::isfinite(largest), "int8 weights: row ", n,
                  " of a weight matrix holds a non-finite value (use f32 or bf16)");
        // A row of zeros keeps scale 0 (every q is 0).
        const float scale = largest / 127.0f;
        scales_[n] = scale;
        const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
        int8_t* q = int8_.data() + n * K;
        for (size_t k = 0; k < K; ++k) {  // to nearest, halves away from zero; |q| <= 127
          const float v = std::min(std::fabs(row[k]) * inverse + 0.5f, 127.0f);
          q[k] = int8_t(row[k] < 0 ? -int(v) : int(v));
        }
        int32_t sum = 0;
        for (size_t k = 0; k < K; ++k) sum += q[k];
        sums_[n] = sum;
      }
      if (layout == WeightLayout::kPanels) {
        int8_ = pack_int8_panels(int8_.data(), N, K);
        layout_ = WeightLayout::kPanels;
      }
      return;
  }
}

const void* StoredWeight::data() const {
  switch (format_) {
    case WeightFormat::kF32:
      return panels_.data();
    case WeightFormat::kBf16:
      return bf16_.data();
    case WeightFormat::kInt8:
      return int8_.data();
  }
  return nullptr;
}

}  // namespace moe
