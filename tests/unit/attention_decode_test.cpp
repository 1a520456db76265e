// attend() for one query (a decode step, which reads every head's part of a key row at once)
// gives each head the bits that query gets among a few others (its q, bias rows and causal limit
// picked out of a 3-query call), on one thread or two, and equals softmax(q·k + bias)·v in double
// precision, with masked keys and the causal limit.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/attention.hpp"
#include "runtime/thread_pool.hpp"
#include "tests/unit/random_floats.hpp"

namespace moe {
namespace {

constexpr int kHeads = 12, kDkv = 64, kKeys = 37, kInner = kHeads * kDkv;

struct Inputs {
  std::vector<float> q = random_floats(size_t(3) * kInner, 41);
  std::vector<float> k = random_floats(size_t(kKeys) * kInner, 42);
  std::vector<float> v = random_floats(size_t(kKeys) * kInner, 43);
  std::vector<float> bias = random_floats(size_t(kHeads) * 3 * kKeys, 44);
  std::vector<uint8_t> valid = std::vector<uint8_t>(kKeys, 1);
  Inputs() { valid[5] = valid[30] = 0; }
};

// Query `i` of a 3-query call, alone.
std::vector<float> alone(const Inputs& in, int i, bool causal) {
  // The bias rows of query i alone: [H, 1, K] out of [H, 3, K].
  std::vector<float> bias(size_t(kHeads) * kKeys);
  for (int h = 0; h < kHeads; ++h)
    for (int j = 0; j < kKeys; ++j)
      bias[size_t(h) * kKeys + j] = in.bias[(size_t(h) * 3 + i) * kKeys + j];
  std::vector<float> ctx(kInner);
  attend({kHeads, kDkv, 1, kKeys, 20 + i, causal}, in.q.data() + size_t(i) * kInner, kInner,
         in.k.data(), in.v.data(), kInner, bias.data(), in.valid.data(), ctx.data(), kInner);
  return ctx;
}

TEST(AttentionDecode, OneQueryGivesTheBitsOfTheFewQueryPathOnOneThreadOrTwo) {
  const Inputs in;
  for (bool causal : {false, true}) {
    std::vector<float> three(size_t(3) * kInner);
    ThreadPool::instance().resize(1);
    attend({kHeads, kDkv, 3, kKeys, 20, causal}, in.q.data(), kInner, in.k.data(), in.v.data(),
           kInner, in.bias.data(), in.valid.data(), three.data(), kInner);
    for (int threads : {1, 2}) {
      ThreadPool::instance().resize(threads);
      for (int i = 0; i < 3; ++i) {
        const auto one = alone(in, i, causal);
        for (int x = 0; x < kInner; ++x)
          ASSERT_EQ(one[x], three[size_t(i) * kInner + x])
              << "query " << i << " output " << x << " causal " << causal << " threads " << threads;
      }
    }
  }
  ThreadPool::instance().resize(1);
}

TEST(AttentionDecode, OneQueryEqualsDoublePrecisionAttention) {
  const Inputs in;
  const int i = 1, first_query = 21;  // causal: keys 0..21 visible
  const auto got = alone(in, i, /*causal=*/true);
  for (int h = 0; h < kHeads; ++h) {
    std::vector<double> p(kKeys, 0.0);
    double top = -INFINITY, sum = 0;
    for (int j = 0; j <= first_query; ++j) {
      if (!in.valid[j]) continue;
      double s = in.bias[(size_t(h) * 3 + i) * kKeys + j];
      for (int x = 0; x < kDkv; ++x)
        s += double(in.q[size_t(i) * kInner + h * kDkv + x]) *
             in.k[size_t(j) * kInner + h * kDkv + x];
      p[j] = s;
      top = std::max(top, s);
    }
    for (int j = 0; j <= first_query; ++j)
      if (in.valid[j]) sum += p[j] = std::exp(p[j] - top);
    for (int x = 0; x < kDkv; ++x) {
      double want = 0;
      for (int j = 0; j <= first_query; ++j)
        if (in.valid[j]) want += p[j] / sum * in.v[size_t(j) * kInner + h * kDkv + x];
      ASSERT_NEAR(got[h * kDkv + x], want, 1e-5) << "head " << h << " output " << x;
    }
  }
}

}  // namespace
}  // namespace moe
