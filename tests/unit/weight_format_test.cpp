// Weight formats of the CPU device: bf16 rounding, int8 scales, and CpuDevice reading the copy
// prepare_weight made — for whole matrices and row blocks of them, on the skinny kernel, the panel
// kernel and the sgemm path, in linear and expert_ffn — while matrices never prepared stay float32.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/cpu/bf16_gemm.hpp"
#include "runtime/cpu/cpu_device.hpp"
#include "runtime/cpu/int8_gemm.hpp"
#include "runtime/cpu/panel_gemm.hpp"
#include "runtime/cpu/weight_matrix.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

// y = x · w^T in double, w widened from `matrix` (rows [0, N)); where the device runs int8
// weights with int8 activations (VNNI), x as quantize_rows makes it: s · (q - 128) per row; where
// it runs bf16 weights with bf16 activations (AVX-512 BF16), x rounded to bf16.
std::vector<double> product(std::vector<float> x, const WeightMatrix& matrix, int M, int N, int K) {
  if (matrix.format == WeightFormat::kBf16 && bf16_dot_available())
    for (float& v : x) v = from_bf16(to_bf16(v));
  if (matrix.format == WeightFormat::kInt8 && int8_vnni_available()) {
    QuantizedRows q;
    quantize_rows(x.data(), M, K, q);
    for (int m = 0; m < M; ++m)
      for (int k = 0; k < K; ++k)
        x[size_t(m) * K + k] = q.scale[m] * float(int(q.q[size_t(m) * q.stride + k]) - 128);
  }
  std::vector<float> w(size_t(N) * K);
  matrix.widen(0, N, K, w.data());
  std::vector<double> y(size_t(M) * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k)
        y[size_t(m) * N + n] += double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
  return y;
}

TEST(WeightFormat, QuantizedRowsStayWithinHalfAStep) {
  constexpr int M = 5, K = 130;  // K past one 64-byte step
  auto x = random_floats(size_t(M) * K, 31);
  for (int k = 0; k < K; ++k) x[size_t(2) * K + k] = 0;  // a row of zeros
  x[size_t(3) * K + 7] = NAN;                            // a row with a NaN
  QuantizedRows q;
  quantize_rows(x.data(), M, K, q);
  ASSERT_EQ(q.stride, 192);
  for (int m = 0; m < M; ++m) {
    if (m == 3) {
      EXPECT_TRUE(std::isnan(q.scale[m]));
      continue;
    }
    for (int k = 0; k < q.stride; ++k) {
      const int v = int(q.q[size_t(m) * q.stride + k]) - 128;
      if (k >= K) {
        ASSERT_EQ(v, 0) << "padding (" << m << ", " << k << ")";
        continue;
      }
      ASSERT_LE(std::abs(v), 127);
      ASSERT_LE(std::fabs(q.scale[m] * v - x[size_t(m) * K + k]), q.scale[m] / 2 * 1.0001f)
          << "(" << m << ", " << k << ")";
    }
  }
}

TEST(WeightFormat, Int8VnniKernelEqualsIntegerProduct) {
  if (!int8_vnni_available()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  struct Shape {
    int M, N, K;
  };
  // Rows past a block of 6, weight rows past blocks of 4 and 8, K past 64-byte steps.
  const Shape shapes[] = {{1, 1, 1},    {1, 37, 63},   {2, 9, 64},   {3, 13, 65},
                          {7, 33, 130}, {13, 96, 768}, {6, 8, 3072}, {40, 21, 200}};
  for (const Shape& s : shapes) {
    const auto x = random_floats(size_t(s.M) * s.K, 41);
    const auto w = random_floats(size_t(s.N) * s.K, 42);
    const auto y0 = random_floats(size_t(s.M) * s.N, 43);
    const StoredWeight stored(WeightFormat::kInt8, w.data(), s.N, s.K);
    const WeightMatrix m = stored.view();
    QuantizedRows q;
    quantize_rows(x.data(), s.M, s.K, q);
    for (int mode = 0; mode < 4; ++mode) {
      const bool accumulate = mode & 1, relu = mode & 2;
      auto y = y0;
      // In two column ranges, as the pool splits them.
      const int half = s.N / 2;
      int8_gemm_vnni(q, static_cast<const int8_t*>(m.data), m.scales, m.sums, y.data(), s.N,
                     accumulate, relu, 0, half);
      int8_gemm_vnni(q, static_cast<const int8_t*>(m.data), m.scales, m.sums, y.data(), s.N,
                     accumulate, relu, half, s.N);
      for (int r = 0; r < s.M; ++r)
        for (int n = 0; n < s.N; ++n) {
          int64_t dot = 0;
          for (int k = 0; k < s.K; ++k)
            dot += int64_t(int(q.q[size_t(r) * q.stride + k]) - 128) *
                   static_cast<const int8_t*>(m.data)[size_t(n) * s.K + k];
          double want = double(q.scale[r]) * m.scales[n] * double(dot);
          if (accumulate) want += y0[size_t(r) * s.N + n];
          if (relu) want = std::max(want, 0.0);
          ASSERT_NEAR(y[size_t(r) * s.N + n], want, 1e-5 * (1 + std::fabs(want)))
              << "M=" << s.M << " N=" << s.N << " K=" << s.K << " mode " << mode << " at (" << r
              << ", " << n << ")";
        }
    }
    // The same product from the panels, in column ranges that start at panels.
    const StoredWeight panelled(WeightFormat::kInt8, w.data(), s.N, s.K, WeightLayout::kPanels);
    const WeightMatrix p = panelled.view();
    for (int mode = 0; mode < 4; ++mode) {
      const bool accumulate = mode & 1, relu = mode & 2;
      auto rows = y0, panels = y0;
      int8_gemm_vnni(q, static_cast<const int8_t*>(m.data), m.scales, m.sums, rows.data(), s.N,
                     accumulate, relu, 0, s.N);
      const int split = s.N / 2 / kInt8PanelColumns * kInt8PanelColumns;
      int8_gemm_vnni_panels(q, static_cast<const int8_t*>(p.data), p.scales, p.sums, panels.data(),
                            s.N, accumulate, relu, 0, split);
      int8_gemm_vnni_panels(q, static_cast<const int8_t*>(p.data), p.scales, p.sums, panels.data(),
                            s.N, accumulate, relu, split, s.N);
      // The same int32 sums and scale products; adding y may round once or twice (the rows
      // kernel's scalar tail fuses it), so with accumulate only to within a rounding.
      for (size_t i = 0; i < rows.size(); ++i)
        if (accumulate)
          ASSERT_NEAR(panels[i], rows[i], 1e-6 * (1 + std::fabs(rows[i])));
        else
          ASSERT_EQ(panels[i], rows[i])
              << "M=" << s.M << " N=" << s.N << " K=" << s.K << " mode " << mode << " at " << i;
    }
    std::vector<float> back(w.size()), back_rows(w.size());
    p.widen(0, s.N, s.K, back.data());
    m.widen(0, s.N, s.K, back_rows.data());
    ASSERT_EQ(back, back_rows);
    // A row's result alone equals its result among the others.
    for (int r = 0; r < s.M; ++r) {
      QuantizedRows one;
      quantize_rows(x.data() + size_t(r) * s.K, 1, s.K, one);
      std::vector<float> alone(s.N), all(size_t(s.M) * s.N);
      int8_gemm_vnni(one, static_cast<const int8_t*>(m.data), m.scales, m.sums, alone.data(), s.N,
                     false, false, 0, s.N);
      int8_gemm_vnni(q, static_cast<const int8_t*>(m.data), m.scales, m.sums, all.data(), s.N,
                     false, false, 0, s.N);
      for (int n = 0; n < s.N; ++n) ASSERT_EQ(alone[n], all[size_t(r) * s.N + n]);
    }
  }
}

TEST(WeightFormat, Int8AmxKernelEqualsVnniPanelsToTheBit) {
  if (!int8_amx_available())
    GTEST_SKIP() << "this CPU (or its kernel) offers no AMX-INT8 tiles to this process";
  struct Shape {
    int M, N, K;
  };
  // Rows past a tile of 16 and within one, outputs past passes of 48 and within a panel, K one
  // to several tile steps of 64.
  const Shape shapes[] = {{1, 16, 64},    {3, 40, 128},  {8, 48, 768},  {16, 100, 192},
                          {17, 64, 3072}, {40, 21, 256}, {64, 768, 768}};
  for (const Shape& s : shapes) {
    const auto x = random_floats(size_t(s.M) * s.K, 51);
    const auto w = random_floats(size_t(s.N) * s.K, 52);
    const auto y0 = random_floats(size_t(s.M) * s.N, 53);
    const StoredWeight panelled(WeightFormat::kInt8, w.data(), s.N, s.K, WeightLayout::kPanels);
    const WeightMatrix p = panelled.view();
    const auto* q8 = static_cast<const int8_t*>(p.data);
    QuantizedRows q;
    quantize_rows(x.data(), s.M, s.K, q);
    for (int mode = 0; mode < 4; ++mode) {
      const bool accumulate = mode & 1, relu = mode & 2;
      auto vnni = y0, amx = y0;
      int8_gemm_vnni_panels(q, q8, p.scales, p.sums, vnni.data(), s.N, accumulate, relu, 0, s.N);
      // In two column ranges that start at panels, as the pool splits them.
      const int split = s.N / 2 / kInt8PanelColumns * kInt8PanelColumns;
      int8_gemm_amx_panels(q, q8, p.scales, p.sums, amx.data(), s.N, accumulate, relu, 0, split);
      int8_gemm_amx_panels(q, q8, p.scales, p.sums, amx.data(), s.N, accumulate, relu, split, s.N);
      for (size_t i = 0; i < vnni.size(); ++i)
        ASSERT_EQ(amx[i], vnni[i])
            << "M=" << s.M << " N=" << s.N << " K=" << s.K << " mode " << mode << " at " << i;
    }
  }
}

TEST(WeightFormat, Bf16DotKernelEqualsProductOfRoundedRows) {
  if (!bf16_dot_available()) GTEST_SKIP() << "this CPU has no AVX-512 BF16";
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{1, 1, 1},    {1, 37, 31},   {2, 9, 32},   {3, 13, 33},
                          {7, 33, 130}, {13, 96, 768}, {6, 8, 3072}, {40, 21, 200}};
  // In HF's rows (bf16_gemm_dot) and in panels (bf16_gemm_dot_panels).
  for (WeightLayout layout : {WeightLayout::kRows, WeightLayout::kPanels})
    for (const Shape& s : shapes) {
      const auto x = random_floats(size_t(s.M) * s.K, 51);
      const auto w = random_floats(size_t(s.N) * s.K, 52);
      const auto y0 = random_floats(size_t(s.M) * s.N, 53);
      const StoredWeight stored(WeightFormat::kBf16, w.data(), s.N, s.K, layout);
      const uint16_t* wb = static_cast<const uint16_t*>(stored.view().data);
      std::vector<float> as_stored(w.size());
      stored.view().widen(0, s.N, s.K, as_stored.data());
      const auto kernel = [&](const Bf16Rows& in, float* y, bool accumulate, bool relu, int n0,
                              int n1) {
        if (layout == WeightLayout::kPanels)
          return bf16_gemm_dot_panels(in, wb, y, s.N, accumulate, relu, n0, n1);
        bf16_gemm_dot(in, wb, y, s.N, accumulate, relu, n0, n1);
      };
      Bf16Rows rows;
      round_rows_to_bf16(x.data(), s.M, s.K, rows);
      for (int mode = 0; mode < 4; ++mode) {
        const bool accumulate = mode & 1, relu = mode & 2;
        auto y = y0;
        // In two column ranges, as the pool splits them (panels: at a panel).
        const int half = layout == WeightLayout::kPanels
                             ? s.N / 2 / kBf16PanelColumns * kBf16PanelColumns
                             : s.N / 2;
        kernel(rows, y.data(), accumulate, relu, 0, half);
        kernel(rows, y.data(), accumulate, relu, half, s.N);
        for (int r = 0; r < s.M; ++r)
          for (int n = 0; n < s.N; ++n) {
            double want = accumulate ? y0[size_t(r) * s.N + n] : 0.0;
            for (int k = 0; k < s.K; ++k)
              want += double(from_bf16(to_bf16(x[size_t(r) * s.K + k]))) *
                      as_stored[size_t(n) * s.K + k];
            if (relu) want = std::max(want, 0.0);
            ASSERT_NEAR(y[size_t(r) * s.N + n], want, 1e-5 * std::sqrt(double(s.K)) + 1e-6)
                << "M=" << s.M << " N=" << s.N << " K=" << s.K << " mode " << mode << " at (" << r
                << ", " << n << ") layout " << int(layout);
          }
      }
      for (int r = 0; r < s.M; ++r) {  // a row alone gives the bits it gives among the others
        Bf16Rows one;
        round_rows_to_bf16(x.data() + size_t(r) * s.K, 1, s.K, one);
        std::vector<float> alone(s.N), all(size_t(s.M) * s.N);
        kernel(one, alone.data(), false, false, 0, s.N);
        kernel(rows, all.data(), false, false, 0, s.N);
        for (int n = 0; n < s.N; ++n) ASSERT_EQ(alone[n], all[size_t(r) * s.N + n]);
      }
    }
}

TEST(WeightFormat, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(from_bf16(to_bf16(-2.5f)), -2.5f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie, rounds up to even
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -12)), 0x3f81);
  EXPECT_TRUE(std::isnan(from_bf16(to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(from_bf16(to_bf16(INFINITY))));
}

TEST(WeightFormat, Int8KeepsEachRowWithinHalfAStep) {
  constexpr int N = 9, K = 300;
  auto w = random_floats(size_t(N) * K, 7);
  for (int k = 0; k < K; ++k) w[size_t(4) * K + k] = 0;  // a row of zeros
  w[size_t(2) * K + 5] = 40;                             // a row with one outlier
  const StoredWeight stored(WeightFormat::kInt8, w.data(), N, K);
  const WeightMatrix m = stored.view();
  std::vector<float> back(w.size());
  m.widen(0, N, K, back.data());
  for (int n = 0; n < N; ++n) {
    float largest = 0;
    for (int k = 0; k < K; ++k) largest = std::max(largest, std::fabs(w[size_t(n) * K + k]));
    EXPECT_FLOAT_EQ(m.scales[n], largest / 127) << "row " << n;
    for (int k = 0; k < K; ++k)
      ASSERT_LE(std::fabs(back[size_t(n) * K + k] - w[size_t(n) * K + k]),
                m.scales[n] / 2 * 1.0001f)
          << "(" << n << ", " << k << ")";
  }
  EXPECT_EQ(stored.bytes(), size_t(N) * K + N * (sizeof(float) + sizeof(int32_t)));
  auto bad = w;
  bad[size_t(3) * K] = INFINITY;
  EXPECT_THROW(StoredWeight(WeightFormat::kInt8, bad.data(), N, K), Error);
  bad[size_t(3) * K] = 1;
  bad[size_t(5) * K + 9] = NAN;
  EXPECT_THROW(StoredWeight(WeightFormat::kInt8, bad.data(), N, K), Error);
}

TEST(WeightFormat, CpuDeviceReadsPreparedCopiesOnEveryPath) {
  constexpr int N = 200, K = 96;
  const auto w = random_floats(size_t(N) * K, 11);
  const auto router = random_floats(size_t(8) * K, 12);
  for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8}) {
    CpuDevice device(1, format);
    device.prepare_weight(w.data(), N, K);
    // The layout the device keeps: float32 in panels, bf16 and int8 too where the CPU has their
    // dot-product instructions.
    const bool dot = (format == WeightFormat::kBf16 && bf16_dot_available()) ||
                     (format == WeightFormat::kInt8 && int8_vnni_available());
    const StoredWeight stored(format, w.data(), N, K,
                              dot ? WeightLayout::kPanels : WeightLayout::kRows);
    EXPECT_EQ(device.prepared_weight_bytes(), stored.bytes());
    for (int M : {1, 3, 31, 64}) {  // the skinny or int8 kernel, then the widened sgemm path
      const auto x = random_floats(size_t(M) * K, M);
      // The whole matrix, and blocks of rows [48, 48 + 70) and [50, 50 + 70) through a pointer
      // into it (panels: the first from the panels, the second from w as it is, in float32).
      for (int first : {0, 48, 50}) {
        const int rows = first ? 70 : N;
        std::vector<float> y(size_t(M) * rows);
        device.linear(x.data(), w.data() + size_t(first) * K, y.data(), M, rows, K, false);
        const WeightMatrix read =
            stored.view().layout == WeightLayout::kPanels && first % kPanelColumns
                ? WeightMatrix{WeightFormat::kF32, w.data(), nullptr}
                : stored.view();
        const auto want = product(x, read.rows_from(first, K), M, rows, K);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_NEAR(y[i], want[i], 1e-4)
              << weight_format_name(format) << " M=" << M << " first=" << first << " at " << i;
      }
      // A matrix never prepared (a router) gives float32's bits.
      std::vector<float> y(size_t(M) * 8), y32(size_t(M) * 8);
      device.linear(x.data(), router.data(), y.data(), M, 8, K, false);
      CpuDevice(1).linear(x.data(), router.data(), y32.data(), M, 8, K, false);
      EXPECT_EQ(y, y32) << weight_format_name(format) << " M=" << M;
    }
  }
}

TEST(WeightFormat, ExpertFfnUsesPreparedCopies) {
  constexpr int d_model = 64, d_ff = 96, rows = 40;
  const auto wi = random_floats(size_t(d_ff) * d_model, 21);
  const auto wo = random_floats(size_t(d_model) * d_ff, 22);
  const auto x = random_floats(size_t(rows) * d_model, 23);
  for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8}) {
    CpuDevice device(1, format);
    device.prepare_weight(wi.data(), d_ff, d_model);
    device.prepare_weight(wo.data(), d_model, d_ff);
    const StoredWeight si(format, wi.data(), d_ff, d_model), so(format, wo.data(), d_model, d_ff);
    // Groups of 3 rows (skinny kernel) and 37 rows (sgemm), as one call.
    std::vector<float> y(size_t(rows) * d_model);
    device.expert_ffn({{{wi.data(), wo.data()}, 0, 3}, {{wi.data(), wo.data()}, 3, 37}}, x.data(),
                      y.data(), d_model, d_ff);
    auto hidden = product(x, si.view(), rows, d_ff, d_model);
    std::vector<float> h(hidden.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = float(std::max(hidden[i], 0.0));
    const auto want = product(h, so.view(), rows, d_model, d_ff);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], want[i], 1e-3) << weight_format_name(format) << " at " << i;
  }
}

TEST(WeightFormat, DeviceSpecs) {
  EXPECT_EQ(make_device("cpu:1:int8")->name(), "cpu:1:int8");
  EXPECT_EQ(make_device("cpu:1:bf16")->name(), "cpu:1:bf16");
  EXPECT_EQ(make_device("cpu:1:f32")->name(), "cpu:1");
  EXPECT_THROW(make_device("cpu:1:fp8"), Error);
  EXPECT_THROW(make_device_spec_check("cpu:1:int4"), Error);
  EXPECT_EQ(with_weight_format("cpu:1", "int8"), "cpu:1:int8");
  EXPECT_EQ(with_weight_format("cpu", "bf16"), "cpu:1:bf16");
  EXPECT_EQ(with_weight_format("cpu:2@0.5", "int8"), "cpu:2:int8@0.5");
  EXPECT_EQ(with_weight_format("cpu:1:bf16", "int8"), "cpu:1:bf16");  // named: kept
  EXPECT_EQ(with_weight_format("cuda:0", "bf16"), "cuda:0:bf16");
  EXPECT_EQ(with_weight_format("cuda:local", "bf16"), "cuda:local:bf16");
  EXPECT_EQ(with_weight_format("cpu:1", "f32"), "cpu:1");
  EXPECT_THROW(parse_weight_format("fp16", "--weights"), Error);
}

}  // namespace
}  // namespace moe
