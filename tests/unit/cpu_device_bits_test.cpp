// Bits of CpuDevice's results that must not depend on how the work is cut: expert_ffn on groups of
// a few rows (a decode step's experts), read as loaded or from panels, gives the same bits on one
// thread and on two, whichever way the groups' products are shared over the threads, and equals a
// double-precision FFN (groups of many rows beside them take the many-row path); a router-sized
// product gives each row the same bits whatever rows share the call (a micro-batch must route as
// the whole batch does).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/cpu/cpu_device.hpp"
#include "runtime/device.hpp"
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

struct Experts {
  int d_model, d_ff, count;
  std::vector<std::vector<float>> wi, wo;
  Experts(int d_model_, int d_ff_, int count_) : d_model(d_model_), d_ff(d_ff_), count(count_) {
    for (int e = 0; e < count; ++e) {
      wi.push_back(random_floats(size_t(d_ff) * d_model, 100 + e));
      wo.push_back(random_floats(size_t(d_model) * d_ff, 200 + e));
    }
  }
};

// Groups of `rows[i]` consecutive rows, expert i.
std::vector<ExpertGroup> groups_of(const Experts& experts, const std::vector<int>& rows) {
  std::vector<ExpertGroup> groups;
  int first = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    groups.push_back({{experts.wi[i].data(), experts.wo[i].data()}, first, rows[i]});
    first += rows[i];
  }
  return groups;
}

// expert_ffn on `threads`; with `panels`, the experts offered to the device first (float32 in
// panels, panel_gemm), else read as they are (skinny_gemm).
std::vector<float> run(int threads, bool panels, const Experts& experts,
                       const std::vector<int>& rows, const std::vector<float>& x) {
  CpuDevice device(threads);
  if (panels)
    for (int e = 0; e < experts.count; ++e) {
      device.prepare_weight(experts.wi[e].data(), experts.d_ff, experts.d_model);
      device.prepare_weight(experts.wo[e].data(), experts.d_model, experts.d_ff);
    }
  int total = 0;
  for (int r : rows) total += r;
  std::vector<float> y(size_t(total) * experts.d_model, -1.0f);
  device.expert_ffn(groups_of(experts, rows), x.data(), y.data(), experts.d_model, experts.d_ff);
  return y;
}

TEST(CpuDeviceBits, FewRowExpertGroupsGiveTheSameBitsOnOneThreadAndTwo) {
  // d_ff past a run of 192 columns and d_model not a multiple of 64 or 48: the runs' and the last
  // panel's tails.
  const Experts experts(72, 200, 6);
  for (bool panels : {false, true})
    for (const std::vector<int>& rows :
         {std::vector<int>{1, 2, 1, 3, 1}, {2, 1}, {1, 1, 1, 1, 1, 1}, {3, 40, 1}}) {
      int total = 0;
      for (int r : rows) total += r;
      const auto x = random_floats(size_t(total) * experts.d_model, 7);
      const auto one = run(1, panels, experts, rows, x);
      const auto two = run(2, panels, experts, rows, x);
      ASSERT_EQ(one, two) << "groups of " << ::testing::PrintToString(rows) << " panels " << panels;
      // And the FFN itself, in double precision.
      for (size_t g = 0, first = 0; g < rows.size(); first += rows[g], ++g)
        for (int r = 0; r < rows[g]; ++r) {
          const float* xr = x.data() + (first + r) * experts.d_model;
          std::vector<double> hidden(experts.d_ff);
          for (int j = 0; j < experts.d_ff; ++j) {
            double s = 0;
            for (int k = 0; k < experts.d_model; ++k)
              s += double(xr[k]) * experts.wi[g][size_t(j) * experts.d_model + k];
            hidden[j] = std::max(s, 0.0);
          }
          for (int i = 0; i < experts.d_model; ++i) {
            double s = 0;
            for (int j = 0; j < experts.d_ff; ++j)
              s += hidden[j] * experts.wo[g][size_t(i) * experts.d_ff + j];
            ASSERT_NEAR(two[(first + r) * experts.d_model + i], s, 1e-3 * (1 + std::abs(s)))
                << "group " << g << " row " << r << " output " << i;
          }
        }
    }
}

TEST(CpuDeviceBits, ARoutersLogitsDoNotDependOnTheRowsBeside) {
  constexpr int experts = 8, d_model = 768, rows = 64;
  const auto router = random_floats(size_t(experts) * d_model, 31);
  const auto x = random_floats(size_t(rows) * d_model, 32);
  for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8}) {
    CpuDevice device(1, format);  // routers stay float32 in every format: none is prepared
    std::vector<float> all(size_t(rows) * experts), half(size_t(rows / 2) * experts);
    device.linear(x.data(), router.data(), all.data(), rows, experts, d_model, false);
    device.linear(x.data(), router.data(), half.data(), rows / 2, experts, d_model, false);
    ASSERT_TRUE(std::equal(half.begin(), half.end(), all.begin())) << weight_format_name(format);
  }
}

}  // namespace
}  // namespace moe
