// Each GPU kernel against its CPU reference (model/, router/), on fresh random inputs, with every
// output poisoned first. Tolerances: permutes are exact; the gate's choices and drops are exact and
// its probability within 2e-6 relative (expf vs glibc exp, ≤ 2 ulp); RMS norm within 2e-6
// relative (float32 sum vs the CPU's float64 sum); attention within 2e-5 absolute on O(1) values
// (a different summation order over keys); bf16 outputs within one bf16 rounding (2^-8 relative).
#include "runtime/cuda/kernels.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cuda_test_support.hpp"
#include "model/attention.hpp"
#include "model/experts.hpp"
#include "model/layers.hpp"
#include "router/expert_dispatch.hpp"
#include "router/gate.hpp"

namespace moe {
namespace {

using gpu::bf16;
using test::DeviceArray;
using test::max_abs_diff;
using test::Random;

constexpr float kBf16Rounding = 1.0f / 256;  // one bf16 rounding, relative

// A realistic permutation: CPU gate over random logits with a capacity that drops tokens.
struct RoutedBatch {
  int T = 0;
  GateResult gate;
  ExpertDispatch dispatch;
};
RoutedBatch route(Random& rng, int sequences, int seq_len, int experts, int capacity) {
  RoutedBatch b;
  b.T = sequences * seq_len;
  const auto logits = rng.normal(size_t(b.T) * experts, 2.0f);
  top1_gate(logits.data(), sequences, seq_len, experts, capacity, b.gate);
  plan_expert_dispatch(b.gate, experts, b.dispatch);
  return b;
}

TEST(GpuPermute, GatherRowsEqualsCpuGatherExactly) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  for (int d : {768, 100, 1}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const RoutedBatch b = route(rng, 3, 200, 8, 15);  // 25 tokens per expert on average
    ASSERT_LT(b.dispatch.rows(), b.T) << "the capacity should drop some tokens";
    const auto x = rng.normal(size_t(b.T) * d);
    std::vector<float> want(size_t(b.dispatch.rows()) * d);
    gather_rows(x.data(), b.dispatch, d, want.data());

    DeviceArray<float> d_x(x), rows(want.size());
    DeviceArray<int> order(b.dispatch.token_of_row);
    gpu::gather_rows(d_x.get(), order.get(), b.dispatch.rows(), d, rows.get(), nullptr);
    EXPECT_EQ(rows.download(), want);

    DeviceArray<bf16> rows16(want.size());
    gpu::gather_rows(d_x.get(), order.get(), b.dispatch.rows(), d, rows16.get(), nullptr);
    const auto got16 = rows16.download();
    const auto want16 = test::to_bf16(want);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got16[i].bits, want16[i].bits) << "float32 → bf16 rounding differs at " << i;

    DeviceArray<bf16> x16(test::to_bf16(x)), rows16b(want.size());
    gpu::gather_rows(x16.get(), order.get(), b.dispatch.rows(), d, rows16b.get(), nullptr);
    const auto got16b = rows16b.download();
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got16b[i].bits, want16[i].bits) << i;
  }
}

TEST(GpuPermute, ScatterAddScalesByProbabilityAndLeavesDroppedTokensAlone) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  const int d = 768;
  const RoutedBatch b = route(rng, 2, 300, 8, 25);  // 37.5 tokens per expert on average
  const int n = b.dispatch.rows();
  ASSERT_LT(n, b.T);
  const auto x0 = rng.normal(size_t(b.T) * d);
  const auto rows = rng.normal(size_t(n) * d);
  std::vector<float> want = x0;
  scatter_add_rows(rows.data(), b.dispatch, b.gate.probability, d, want.data());

  DeviceArray<int> order(b.dispatch.token_of_row);
  DeviceArray<float> probability(b.gate.probability);
  {
    DeviceArray<float> x(x0), d_rows(rows);
    gpu::scatter_add_rows(d_rows.get(), order.get(), probability.get(), n, d, x.get(), nullptr);
    const auto got = x.download();
    EXPECT_LE(max_abs_diff(got, want), 1e-6);
    for (int t = 0; t < b.T; ++t) {
      if (b.gate.kept[t]) continue;
      for (int j = 0; j < d; ++j) ASSERT_EQ(got[size_t(t) * d + j], x0[size_t(t) * d + j]);
    }
  }
  {  // bf16 rows into the float32 residual: the CPU reference on the same (rounded) rows
    const auto rows16 = test::to_bf16(rows);
    const auto rows_rounded = test::to_float(rows16);
    std::vector<float> want16 = x0;
    scatter_add_rows(rows_rounded.data(), b.dispatch, b.gate.probability, d, want16.data());
    DeviceArray<float> x(x0);
    DeviceArray<bf16> d_rows(rows16);
    gpu::scatter_add_rows(d_rows.get(), order.get(), probability.get(), n, d, x.get(), nullptr);
    EXPECT_LE(max_abs_diff(x.download(), want16), 1e-6);
  }
}

void expect_gate_matches_cpu(const std::vector<float>& logits, int sequences, int seq_len,
                             int experts, int capacity) {
  GateResult want;
  top1_gate(logits.data(), sequences, seq_len, experts, capacity, want);
  const size_t T = size_t(sequences) * seq_len;
  DeviceArray<float> d_logits(logits), probability(T);
  DeviceArray<int> expert(T);
  DeviceArray<uint8_t> kept(T);
  gpu::top1_gate(d_logits.get(), sequences, seq_len, experts, capacity, expert.get(),
                 probability.get(), kept.get(), nullptr);
  const auto got_expert = expert.download();
  const auto got_p = probability.download();
  const auto got_kept = kept.download();
  for (size_t t = 0; t < T; ++t) {
    ASSERT_EQ(got_expert[t], want.expert[t]) << "token " << t;
    ASSERT_EQ(got_kept[t], want.kept[t]) << "token " << t;
    ASSERT_NEAR(got_p[t], want.probability[t], 2e-6 * want.probability[t]) << "token " << t;
  }
}

TEST(GpuGate, MatchesCpuGateWithCapacityInPositionOrderPerSequence) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  struct Case {
    int sequences, seq_len, experts, capacity;
  };
  // seq_len > 256 crosses the kernel's chunks; capacity below seq_len/E forces drops.
  for (const Case c :
       {Case{3, 300, 8, 30}, Case{1, 1000, 128, 6}, Case{5, 17, 4, 2}, Case{2, 600, 8, 1000}}) {
    SCOPED_TRACE("sequences " + std::to_string(c.sequences) + " seq_len " +
                 std::to_string(c.seq_len) + " experts " + std::to_string(c.experts));
    auto logits = rng.normal(size_t(c.sequences) * c.seq_len * c.experts, 1.5f);
    for (size_t i = 0; i < logits.size(); i += c.experts) logits[i] += 1.0f;  // skew to expert 0
    expect_gate_matches_cpu(logits, c.sequences, c.seq_len, c.experts, c.capacity);
  }
}

TEST(GpuGate, TiesGoToTheFirstMaximum) {
  MOE_SKIP_WITHOUT_GPU();
  // Row 0: experts 2 and 5 tie; row 1: all equal; row 2: a tie at the last two.
  const std::vector<float> logits = {0.1f, 0.3f, 0.9f, -1.0f, 0.0f, 0.9f, 0.2f, 0.5f,  //
                                     0.4f, 0.4f, 0.4f, 0.4f,  0.4f, 0.4f, 0.4f, 0.4f,  //
                                     -3.f, -2.f, -1.f, 0.0f,  1.0f, 2.0f, 7.0f, 7.0f};
  expect_gate_matches_cpu(logits, 1, 3, 8, 2);
  GateResult want;
  top1_gate(logits.data(), 1, 3, 8, 2, want);
  EXPECT_EQ(want.expert, (std::vector<int>{2, 0, 6}));
}

TEST(GpuRmsNorm, MatchesCpuRmsNormInFloat32AndRoundsOnceToBf16) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  for (int d : {768, 1000, 32}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const int T = 37;
    const float eps = 1e-6f;
    const auto x = rng.normal(size_t(T) * d, 3.0f);
    const auto weight = rng.uniform(d, 0.5f, 1.5f);
    std::vector<float> want(x.size());
    rms_norm(x.data(), weight.data(), eps, T, d, want.data());

    DeviceArray<float> d_x(x), d_w(weight), out(x.size());
    gpu::rms_norm(d_x.get(), d_w.get(), eps, T, d, out.get(), nullptr);
    const auto got = out.download();
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-12) << i;

    DeviceArray<bf16> out16(x.size());
    gpu::rms_norm(d_x.get(), d_w.get(), eps, T, d, out16.get(), nullptr);
    const auto got16 = test::to_float(out16.download());
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got16[i], want[i], kBf16Rounding * std::fabs(want[i])) << i;

    // bf16 in, bf16 out: the CPU reference on the rounded input, then one more rounding.
    const auto x16 = test::to_bf16(x);
    const auto x_rounded = test::to_float(x16);
    std::vector<float> want_b(x.size());
    rms_norm(x_rounded.data(), weight.data(), eps, T, d, want_b.data());
    DeviceArray<bf16> d_x16(x16), out16b(x.size());
    gpu::rms_norm(d_x16.get(), d_w.get(), eps, T, d, out16b.get(), nullptr);
    const auto got16b = test::to_float(out16b.download());
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got16b[i], want_b[i], kBf16Rounding * std::fabs(want_b[i])) << i;
  }
}

struct AttentionCase {
  const char* what;
  int heads, d_kv, queries, keys, first_query;
  bool causal, bias, mask;
  int stride_pad;  // extra floats per row, as in a fused qkv buffer
};

TEST(GpuAttention, MatchesCpuAttendForBiasMaskCausalOffsetAndStrides) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  const AttentionCase cases[] = {
      {"encoder: bias + padding mask", 12, 64, 50, 50, 0, false, true, true, 0},
      {"decoder step: causal, offset 15", 4, 64, 5, 20, 15, true, true, false, 0},
      {"decoder prefill: causal from 0", 4, 64, 33, 33, 0, true, false, true, 0},
      {"cross attention, strided rows", 6, 64, 7, 40, 0, false, false, true, 17},
      {"tiny heads, long keys", 2, 8, 3, 1500, 0, false, true, true, 0},
      {"widest heads", 2, 128, 9, 70, 0, false, true, false, 3},
      {"odd head dim", 3, 40, 11, 13, 0, false, false, false, 0},
  };
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(c.what);
    const int inner = c.heads * c.d_kv;
    const int q_stride = inner + c.stride_pad, kv_stride = inner + 2 * c.stride_pad;
    const int ctx_stride = inner + c.stride_pad;
    const auto q = rng.normal(size_t(c.queries) * q_stride);
    const auto k = rng.normal(size_t(c.keys) * kv_stride, 0.3f);
    const auto v = rng.normal(size_t(c.keys) * kv_stride);
    const auto bias = rng.normal(size_t(c.heads) * c.queries * c.keys);
    std::vector<uint8_t> valid(c.keys, 1);
    if (c.mask)
      for (int j = c.keys - c.keys / 4; j < c.keys; ++j) valid[j] = 0;  // right padding
    if (c.mask && c.keys > 5) valid[3] = 0;

    std::vector<float> want(size_t(c.queries) * ctx_stride, 0.0f);
    const AttentionShape cpu_shape{c.heads, c.d_kv, c.queries, c.keys, c.first_query, c.causal};
    attend(cpu_shape, q.data(), q_stride, k.data(), v.data(), kv_stride,
           c.bias ? bias.data() : nullptr, c.mask ? valid.data() : nullptr, want.data(),
           ctx_stride);

    DeviceArray<float> d_q(q), d_k(k), d_v(v), d_bias(bias), ctx(want.size());
    DeviceArray<uint8_t> d_valid(valid);
    const gpu::AttentionShape shape{c.heads, c.d_kv, c.queries, c.keys, c.first_query, c.causal};
    gpu::attend(shape, d_q.get(), q_stride, d_k.get(), d_v.get(), kv_stride,
                c.bias ? d_bias.get() : nullptr, c.mask ? d_valid.get() : nullptr, ctx.get(),
                ctx_stride, nullptr);
    const auto got = ctx.download();
    // Compare the written columns; the stride padding must stay poisoned (NaN), i.e. unwritten.
    for (int i = 0; i < c.queries; ++i) {
      for (int x = 0; x < inner; ++x) {
        const size_t at = size_t(i) * ctx_stride + x;
        ASSERT_NEAR(got[at], want[at], 2e-5) << "query " << i << " column " << x;
      }
      for (int x = inner; x < ctx_stride; ++x)
        ASSERT_TRUE(std::isnan(got[size_t(i) * ctx_stride + x])) << "padding written";
    }
  }
}

TEST(GpuElementwise, ReluAndConversionsMatchTheHost) {
  MOE_SKIP_WITHOUT_GPU();
  Random rng;
  MOE_TRACE_SEED(rng);
  const size_t n = 1'000'003;  // not a multiple of any block size
  const auto x = rng.normal(n);
  DeviceArray<float> d_x(x);
  gpu::relu_inplace(d_x.get(), n, nullptr);
  const auto relu = d_x.download();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(relu[i], std::max(x[i], 0.0f)) << i;

  DeviceArray<float> x32(x);
  DeviceArray<bf16> x16(n);
  gpu::convert(x32.get(), x16.get(), n, nullptr);
  const auto got16 = x16.download();
  const auto want16 = test::to_bf16(x);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got16[i].bits, want16[i].bits) << i;

  gpu::relu_inplace(x16.get(), n, nullptr);
  DeviceArray<float> back(n);
  gpu::convert(x16.get(), back.get(), n, nullptr);
  const auto got = back.download();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], std::max(gpu::to_float(want16[i]), 0.0f)) << i;
}

}  // namespace
}  // namespace moe
