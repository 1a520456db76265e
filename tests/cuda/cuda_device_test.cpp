// CudaDevice's linear and expert_ffn against a float64 reference and against the CPU device
// (OpenBLAS), on both GEMM paths and both precisions, with host outputs NaN-poisoned first.
// Tolerances (‖out − ref‖/‖ref‖): float32 ≤ 1e-5 against float64 (plain FP32 GEMMs, K ≤ 3072:
// ~sqrt(K)·2^-24 ≈ 3e-6), and max |GPU − CPU| ≤ 1e-4 on O(1) outputs; bf16 ≤ 1e-2 against float64
// (inputs, weights and the hidden layer each rounded to 8 mantissa bits, float32 accumulation).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "cuda_test_support.hpp"
#include "runtime/cpu/cpu_device.hpp"
#include "runtime/cuda/cuda_expert_tier.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

using test::max_abs_diff;
using test::Random;
using test::relative_error;

constexpr double kF32Tolerance = 1e-5;
constexpr double kCpuAbsTolerance = 1e-4;
constexpr double kBf16Tolerance = 1e-2;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Experts with random weights and groups of the given sizes, `gap` uncovered rows between them.
struct ExpertSet {
  int d_model, d_ff;
  std::vector<std::vector<float>> wi, wo;
  std::vector<ExpertGroup> groups;
  int rows = 0;  // rows of x and y, gaps included

  ExpertSet(Random& rng, int d_model_, int d_ff_, const std::vector<int>& counts, int gap)
      : d_model(d_model_), d_ff(d_ff_) {
    // Scaled so that hidden and output values are O(1).
    const float wi_scale = 1.0f / std::sqrt(float(d_model)),
                wo_scale = 2.0f / std::sqrt(float(d_ff));
    for (size_t e = 0; e < counts.size(); ++e) {
      wi.push_back(rng.normal(size_t(d_ff) * d_model, wi_scale));
      wo.push_back(rng.normal(size_t(d_model) * d_ff, wo_scale));
    }
    for (size_t e = 0; e < counts.size(); ++e) {
      groups.push_back({{wi[e].data(), wo[e].data()}, rows, counts[e]});
      rows += counts[e] + gap;
    }
  }

  // y = relu(x·wi^T)·wo^T per group in float64; rows outside every group are NaN.
  std::vector<double> reference(const std::vector<float>& x) const {
    std::vector<double> y(size_t(rows) * d_model, std::nan(""));
    std::vector<double> hidden(d_ff);
    for (const ExpertGroup& g : groups)
      for (int r = g.first_row; r < g.first_row + g.rows; ++r) {
        const float* xr = x.data() + size_t(r) * d_model;
        for (int f = 0; f < d_ff; ++f) {
          double sum = 0;
          for (int i = 0; i < d_model; ++i)
            sum += double(xr[i]) * g.weights.wi[size_t(f) * d_model + i];
          hidden[f] = std::max(sum, 0.0);
        }
        for (int o = 0; o < d_model; ++o) {
          double sum = 0;
          for (int f = 0; f < d_ff; ++f) sum += hidden[f] * g.weights.wo[size_t(o) * d_ff + f];
          y[size_t(r) * d_model + o] = sum;
        }
      }
    return y;
  }

  // Output rows covered by groups, in order: what the comparisons look at.
  template <typename T>
  std::vector<T> covered(const std::vector<T>& y) const {
    std::vector<T> out;
    for (const ExpertGroup& g : groups)
      out.insert(out.end(), y.begin() + size_t(g.first_row) * d_model,
                 y.begin() + size_t(g.first_row + g.rows) * d_model);
    return out;
  }

  // Gap rows must keep their sentinel: the device writes only the groups' rows.
  void expect_gaps_untouched(const std::vector<float>& y, float sentinel) const {
    std::vector<uint8_t> in_group(rows, 0);
    for (const ExpertGroup& g : groups)
      for (int r = g.first_row; r < g.first_row + g.rows; ++r) in_group[r] = 1;
    for (int r = 0; r < rows; ++r) {
      if (in_group[r]) continue;
      for (int i = 0; i < d_model; ++i)
        ASSERT_EQ(y[size_t(r) * d_model + i], sentinel) << "row " << r << " is in no group";
    }
  }
};

// y with NaN in every group row and `sentinel` in the gaps.
std::vector<float> poisoned_output(const ExpertSet& set, float sentinel) {
  std::vector<float> y(size_t(set.rows) * set.d_model, sentinel);
  for (const ExpertGroup& g : set.groups)
    std::fill(y.begin() + size_t(g.first_row) * set.d_model,
              y.begin() + size_t(g.first_row + g.rows) * set.d_model, kNaN);
  return y;
}

TEST(CudaDevice, LinearMatchesFloat64AndCpuWithAndWithoutAccumulate) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  CpuDevice cpu(4);
  for (auto [M, N, K] : {std::tuple{33, 96, 768}, {1, 32128, 64}, {257, 3, 100}, {512, 768, 768}}) {
    SCOPED_TRACE("M N K = " + std::to_string(M) + " " + std::to_string(N) + " " +
                 std::to_string(K));
    CudaDevice gpu(0);  // fresh per weight: the cache is keyed by host pointer
    const auto x = rng.normal(size_t(M) * K);
    const auto w = rng.normal(size_t(N) * K, 1.0f / std::sqrt(float(K)));
    const auto y0 = rng.normal(size_t(M) * N);
    std::vector<double> ref(size_t(M) * N);
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double sum = 0;
        for (int k = 0; k < K; ++k) sum += double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
        ref[size_t(m) * N + n] = sum;
      }
    std::vector<float> y(size_t(M) * N, kNaN), y_cpu(size_t(M) * N);
    gpu.linear(x.data(), w.data(), y.data(), M, N, K, false);
    cpu.linear(x.data(), w.data(), y_cpu.data(), M, N, K, false);
    EXPECT_LE(relative_error(y, ref), kF32Tolerance);
    EXPECT_LE(max_abs_diff(y, y_cpu), kCpuAbsTolerance);

    std::vector<float> acc = y0, acc_cpu = y0;
    gpu.linear(x.data(), w.data(), acc.data(), M, N, K, true);
    cpu.linear(x.data(), w.data(), acc_cpu.data(), M, N, K, true);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += y0[i];
    EXPECT_LE(relative_error(acc, ref), kF32Tolerance);
    EXPECT_LE(max_abs_diff(acc, acc_cpu), kCpuAbsTolerance);
  }
}

// Every GEMM issue path (and the per-call automatic choice) in both precisions; per_group runs
// once on the device's stream alone and once spread over 4 side streams.
class CudaExpertFfn : public ::testing::TestWithParam<std::tuple<ExpertGemm, CudaPrecision>> {
 protected:
  std::vector<int> stream_counts() const {
    return std::get<0>(GetParam()) == ExpertGemm::per_group ? std::vector<int>{1, 4}
                                                            : std::vector<int>{4};
  }
};

TEST_P(CudaExpertFfn, MatchesFloat64AndCpuForUnevenGroupsWithGaps) {
  MOE_SKIP_WITHOUT_GPU();
  const auto [path, precision] = GetParam();
  Random rng;
  MOE_TRACE_SEED(rng);
  CpuDevice cpu(4);
  // Empty experts, a single-row expert and a large one, in two layouts: packed and with gaps.
  for (int streams : stream_counts())
    for (int gap : {0, 3}) {
      SCOPED_TRACE("gap " + std::to_string(gap) + ", streams " + std::to_string(streams));
      // A fresh device per weight set: the cache is keyed by host pointer, and freed vectors'
      // addresses come back.
      CudaDevice gpu(0, precision);
      gpu.set_expert_gemm(path, streams);
      const ExpertSet set(rng, 64, 256, {0, 5, 17, 1, 0, 140, 3, 9}, gap);
      const auto x = rng.normal(size_t(set.rows) * set.d_model);
      const auto ref = set.covered(set.reference(x));
      const float sentinel = 7.0f;
      auto y = poisoned_output(set, sentinel);
      gpu.expert_ffn(set.groups, x.data(), y.data(), set.d_model, set.d_ff);
      set.expect_gaps_untouched(y, sentinel);
      if (precision == CudaPrecision::f32) {
        EXPECT_LE(relative_error(set.covered(y), ref), kF32Tolerance);
        auto y_cpu = poisoned_output(set, sentinel);
        cpu.expert_ffn(set.groups, x.data(), y_cpu.data(), set.d_model, set.d_ff);
        EXPECT_LE(max_abs_diff(set.covered(y), set.covered(y_cpu)), kCpuAbsTolerance);
      } else {
        EXPECT_LE(relative_error(set.covered(y), ref), kBf16Tolerance);
      }
    }
}

TEST_P(CudaExpertFfn, SwitchBaseShapesMatchCpuDevice) {
  MOE_SKIP_WITHOUT_GPU();
  const auto [path, precision] = GetParam();
  Random rng;
  MOE_TRACE_SEED(rng);
  CpuDevice cpu(8);
  // switch-base-8: d_model 768, d_ff 3072, 8 experts, a skewed split of 600 tokens.
  const ExpertSet set(rng, 768, 3072, {250, 120, 0, 90, 60, 40, 30, 10}, 0);
  const auto x = rng.normal(size_t(set.rows) * set.d_model);
  auto y_cpu = poisoned_output(set, 0.0f);
  cpu.expert_ffn(set.groups, x.data(), y_cpu.data(), set.d_model, set.d_ff);
  const double tolerance = precision == CudaPrecision::f32 ? kF32Tolerance : kBf16Tolerance;
  for (int streams : stream_counts()) {
    SCOPED_TRACE("streams " + std::to_string(streams));
    CudaDevice gpu(0, precision);
    gpu.set_expert_gemm(path, streams);
    auto y = poisoned_output(set, 0.0f);
    gpu.expert_ffn(set.groups, x.data(), y.data(), set.d_model, set.d_ff);
    EXPECT_LE(relative_error(y, y_cpu), tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(
    PathsAndPrecisions, CudaExpertFfn,
    ::testing::Combine(::testing::Values(ExpertGemm::automatic, ExpertGemm::grouped,
                                         ExpertGemm::per_group),
                       ::testing::Values(CudaPrecision::f32, CudaPrecision::bf16)),
    [](const auto& info) {
      const ExpertGemm path = std::get<0>(info.param);
      return std::string(path == ExpertGemm::automatic ? "automatic"
                         : path == ExpertGemm::grouped ? "grouped"
                                                       : "per_group") +
             (std::get<1>(info.param) == CudaPrecision::f32 ? "_f32" : "_bf16");
    });

TEST(CudaDevice, DevicePointerApiGivesTheHostApiResultsBitForBit) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  CudaDevice gpu(0);
  const ExpertSet set(rng, 128, 512, {30, 0, 70, 12}, 2);
  const auto x = rng.normal(size_t(set.rows) * set.d_model);
  auto y_host = poisoned_output(set, 1.0f);
  gpu.expert_ffn(set.groups, x.data(), y_host.data(), set.d_model, set.d_ff);

  const size_t n = x.size();
  float* d_x = gpu.alloc_floats(n);
  float* d_y = gpu.alloc_floats(n);
  auto y_dev = poisoned_output(set, 1.0f);
  gpu.copy_to_device(d_x, x.data(), n);
  gpu.copy_to_device(d_y, y_dev.data(), n);
  gpu.expert_ffn_device(set.groups, d_x, d_y, set.d_model, set.d_ff);
  gpu.copy_to_host(y_dev.data(), d_y, n);
  gpu.synchronize();
  set.expect_gaps_untouched(y_dev, 1.0f);
  EXPECT_EQ(set.covered(y_dev), set.covered(y_host));

  // linear_device on the same buffers: y[rows, 64] = x · w^T.
  const auto w = rng.normal(size_t(64) * set.d_model);
  std::vector<float> lin_host(size_t(set.rows) * 64, kNaN), lin_dev(lin_host.size(), kNaN);
  gpu.linear(x.data(), w.data(), lin_host.data(), set.rows, 64, set.d_model, false);
  gpu.linear_device(d_x, w.data(), d_y, set.rows, 64, set.d_model, false);
  gpu.copy_to_host(lin_dev.data(), d_y, lin_dev.size());
  gpu.synchronize();
  EXPECT_EQ(lin_dev, lin_host);
  gpu.free_floats(d_x);
  gpu.free_floats(d_y);
}

TEST(CudaDevice, WeightsUploadOnceAndCanBeEvicted) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  for (CudaPrecision precision : {CudaPrecision::f32, CudaPrecision::bf16}) {
    CudaDevice gpu(0, precision);
    const ExpertSet set(rng, 64, 128, {4, 4}, 0);
    const auto x = rng.normal(size_t(set.rows) * set.d_model);
    std::vector<float> y(x.size());
    const size_t elt = precision == CudaPrecision::f32 ? 4 : 2;
    const size_t per_expert = 2 * size_t(set.d_model) * set.d_ff * elt;
    EXPECT_EQ(gpu.cached_weight_bytes(), 0u);
    gpu.expert_ffn(set.groups, x.data(), y.data(), set.d_model, set.d_ff);
    EXPECT_EQ(gpu.cached_weight_bytes(), 2 * per_expert);
    gpu.expert_ffn(set.groups, x.data(), y.data(), set.d_model, set.d_ff);
    EXPECT_EQ(gpu.cached_weight_bytes(), 2 * per_expert) << "second call must reuse the cache";
    gpu.evict_weight(set.wi[0].data());
    gpu.evict_weight(set.wo[0].data());
    EXPECT_EQ(gpu.cached_weight_bytes(), per_expert);
    gpu.prefetch_expert(set.groups[0].weights, set.d_model, set.d_ff);
    EXPECT_EQ(gpu.cached_weight_bytes(), 2 * per_expert);
    // The same pointer as a weight of another shape is refused, not silently misread.
    std::vector<float> out(64);
    EXPECT_THROW(gpu.linear(x.data(), set.wi[1].data(), out.data(), 1, 64, 64, false), Error);
  }
}

// The swapper's path (runtime/expert_tier.hpp): experts uploaded from another thread on the copy
// stream while this thread computes with others give the results of experts uploaded in the step,
// bit for bit; an expert dropped from another thread while this one uses it is uploaded again
// where it is looked up after the drop, and never freed under work queued on it (run under
// compute-sanitizer by run_on_gpu.sh); dropping frees its bytes.
TEST(CudaDevice, ExpertsUploadedFromAnotherThreadGiveTheSameResults) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  for (CudaPrecision precision : {CudaPrecision::f32, CudaPrecision::bf16}) {
    CudaDevice gpu(0, precision);
    const ExpertSet set(rng, 256, 512, {5, 3, 7, 1}, 0);  // no gaps: every row is written
    const auto x = rng.normal(size_t(set.rows) * set.d_model);
    std::vector<float> in_step(x.size(), kNaN), swapped(x.size(), kNaN);
    gpu.expert_ffn(set.groups, x.data(), in_step.data(), set.d_model, set.d_ff);
    for (const ExpertGroup& g : set.groups) gpu.drop_expert(g.weights);
    EXPECT_EQ(gpu.cached_weight_bytes(), 0u);
    std::thread swapper([&] {
      for (size_t e = 1; e < set.groups.size(); ++e)
        gpu.upload_expert_async(set.groups[e].weights, set.d_model, set.d_ff, e % 2 == 0);
    });
    for (int i = 0; i < 20; ++i)  // expert 0 alone, uploaded in the step, while the others copy
      gpu.expert_ffn({set.groups[0]}, x.data(), swapped.data(), set.d_model, set.d_ff);
    swapper.join();
    gpu.expert_ffn(set.groups, x.data(), swapped.data(), set.d_model, set.d_ff);
    EXPECT_EQ(swapped, in_step) << "precision " << int(precision);
    const size_t elt = precision == CudaPrecision::f32 ? 4 : 2;
    const size_t per_expert = 2 * size_t(set.d_model) * set.d_ff * elt;
    EXPECT_EQ(gpu.cached_weight_bytes(), set.groups.size() * per_expert);
    // Expert 1 dropped and uploaded again from another thread while this one computes with it.
    std::thread churn([&] {
      for (int i = 0; i < 20; ++i) {
        gpu.drop_expert(set.groups[1].weights);
        gpu.upload_expert_async(set.groups[1].weights, set.d_model, set.d_ff);
      }
    });
    for (int i = 0; i < 20; ++i) {
      std::fill(swapped.begin(), swapped.end(), kNaN);
      gpu.expert_ffn(set.groups, x.data(), swapped.data(), set.d_model, set.d_ff);
      ASSERT_EQ(swapped, in_step) << "call " << i << ", precision " << int(precision);
    }
    churn.join();
    gpu.drop_expert(set.groups[3].weights);
    EXPECT_EQ(gpu.cached_weight_bytes(), 3 * per_expert);
  }
}

TEST(CudaExpertTier, PinsTheExpertsAndMovesThemInAndOut) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  CudaDevice gpu(0);
  const ExpertSet set(rng, 256, 1024, {4, 4}, 0);
  std::vector<ExpertWeights> experts;
  for (const ExpertGroup& g : set.groups) experts.push_back(g.weights);
  const auto tier = make_expert_tier(gpu, set.d_model, set.d_ff, experts);
  EXPECT_NE(tier->name().find("pinned host memory"), std::string::npos) << tier->name();
  // Heap memory can always be registered: every expert's pages (whole pages, so at least them).
  EXPECT_GE(gpu.pinned_host_bytes(), 2 * experts.size() * size_t(set.d_model) * set.d_ff * 4);
  EXPECT_EQ(tier->measure(), "device memory in use");
  const uint64_t before = tier->resident_bytes();
  tier->bring_in(experts[0]);
  tier->bring_in(experts[1]);
  const auto x = rng.normal(size_t(set.rows) * set.d_model);
  std::vector<float> y(x.size(), kNaN);
  gpu.expert_ffn(set.groups, x.data(), y.data(), set.d_model, set.d_ff);
  const uint64_t expert_bytes = 2 * size_t(set.d_model) * set.d_ff * sizeof(float);
  EXPECT_GE(tier->resident_bytes(), before + 2 * expert_bytes - (2 << 20));
  tier->send_back(experts[0]);
  tier->send_back(experts[1]);
  EXPECT_EQ(gpu.cached_weight_bytes(), 0u);
  CpuDevice cpu(1);
  std::vector<float> y_cpu(x.size(), kNaN);
  cpu.expert_ffn(set.groups, x.data(), y_cpu.data(), set.d_model, set.d_ff);
  EXPECT_LE(max_abs_diff(y, y_cpu), kCpuAbsTolerance);
}

// Pure host arithmetic: runs without a GPU.
TEST(CudaExpertTier, PageRangesAreAlignedOutwardAndOverlapsMerged) {
  const auto merged =
      merged_page_ranges({{5000, 9000}, {100, 4096}, {8192, 8200}, {20000, 20001}}, 4096);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0], (std::pair<uintptr_t, uintptr_t>{0, 12288}));
  EXPECT_EQ(merged[1], (std::pair<uintptr_t, uintptr_t>{16384, 20480}));
}

TEST(CudaDevice, NamesItselfAndRejectsAnIndexOutOfRange) {
  MOE_SKIP_WITHOUT_GPU();
  EXPECT_EQ(CudaDevice(0).name(), "cuda:0");
  EXPECT_EQ(CudaDevice(0, CudaPrecision::bf16).name(), "cuda:0:bf16");
  EXPECT_EQ(make_cuda_device(0)->name(), "cuda:0");
  try {
    CudaDevice bad(cuda_device_count());
    FAIL() << "an index past the last device must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
  CudaDevice gpu(0);
  std::vector<float> none;
  gpu.expert_ffn({}, none.data(), none.data(), 64, 128);  // no groups: nothing to do
  gpu.expert_ffn({{{nullptr, nullptr}, 0, 0}}, none.data(), none.data(), 64, 128);
}

// The one test here that runs where there is no GPU: the error must say so, not crash.
TEST(CudaDevice, WithoutAGpuConstructionFailsWithAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    CudaDevice gpu(0);
    FAIL() << "constructing a CUDA device without a GPU must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

TEST(CudaPrecisionSpec, ParsesF32AndBf16AndRejectsAnythingElse) {
  EXPECT_EQ(parse_cuda_precision(""), CudaPrecision::f32);
  EXPECT_EQ(parse_cuda_precision("f32"), CudaPrecision::f32);
  EXPECT_EQ(parse_cuda_precision("bf16"), CudaPrecision::bf16);
  EXPECT_THROW(parse_cuda_precision("fp16"), Error);
}

}  // namespace
}  // namespace moe
