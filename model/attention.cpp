#include "model/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/cpu/sgemm.hpp"
#include "runtime/thread_pool.hpp"

namespace moe {

int relative_position_bucket(int relative_position, bool bidirectional, int num_buckets,
                             int max_distance) {
  int bucket = 0;
  int n = relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n > 0) bucket += num_buckets;
    n = std::abs(n);
  } else {
    n = n < 0 ? -n : 0;
  }
  const int max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + n;
  // float32 arithmetic, like torch on a float tensor with Python-float scalars.
  const float log_ratio = std::log(float(n) / float(max_exact)) /
                          float(std::log(double(max_distance) / max_exact)) *
                          float(num_buckets - max_exact);
  int large = max_exact + static_cast<int>(log_ratio);
  if (large > num_buckets - 1) large = num_buckets - 1;
  return bucket + large;
}

void relative_position_bias(const float* table, const ModelConfig& c, bool bidirectional,
                            int first_query, int Q, int K, float* bias) {
  const int H = c.num_heads;
  for (int i = 0; i < Q; ++i)
    for (int j = 0; j < K; ++j) {
      const int b = relative_position_bucket(j - (first_query + i), bidirectional,
                                             c.relative_attention_num_buckets,
                                             c.relative_attention_max_distance);
      for (int h = 0; h < H; ++h) bias[(size_t(h) * Q + i) * K + j] = table[b * H + h];
    }
}

namespace {

// ThreadSanitizer instruments the resolver that target_clones generates, and the resolver runs
// while the program is relocated, before TSan's runtime is up (a crash at start): one version
// there.
#if defined(__SANITIZE_THREAD__)
#define MOE_NO_TARGET_CLONES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOE_NO_TARGET_CLONES 1
#endif
#endif
#ifdef MOE_NO_TARGET_CLONES
#define MOE_SIMD_CLONES
#else
#define MOE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

// scores[j] = e^(scores[j] − max_score) for j < n; returns their sum (in double, in order, so that
// a row sums alike wherever it is computed).
inline double exp_shifted(float* scores, int n, float max_score) {
#pragma omp simd
  for (int j = 0; j < n; ++j) scores[j] = exp_nonpositive(scores[j] - max_score);
  double sum = 0.0;
  for (int j = 0; j < n; ++j) sum += scores[j];
  return sum;
}

// One query over heads [h0, h1): per head, ctx = softmax(q·k + bias) · v over keys
// 0..visible-1. The keys' and values' rows are read once, front to back, each row's part of every
// head at once: per head, the reads strode through the cache a row apart (a head's part is d_kv of
// a row's heads × d_kv floats), and attention, bound by reading the cache, was 9% of a batch-64
// decode. Compiled for AVX-512, AVX2 and the baseline, chosen at load time from the CPU's
// features; the sums over d_kv are vectorised (their order differs from a plain loop by
// rounding). bias: [heads][bias_stride]; ctx: [heads][d_kv]; scratch: (h1 - h0) × (visible + 1).
MOE_SIMD_CLONES void attend_heads(int d_kv, int h0, int h1, int visible, const float* q,
                                  const float* k, const float* v, int kv_stride, const float* bias,
                                  int bias_stride, const uint8_t* key_valid, float* scratch,
                                  float* ctx) {
  const int heads = h1 - h0;
  float* inv = scratch;             // [heads]: 1 / each head's softmax sum
  float* scores = scratch + heads;  // [heads][visible]
  for (int j = 0; j < visible; ++j) {
    const float* kj = k + size_t(j) * kv_stride;
    for (int h = 0; h < heads; ++h) {
      float& score = scores[size_t(h) * visible + j];
      if (key_valid && !key_valid[j]) {
        score = -std::numeric_limits<float>::infinity();
        continue;
      }
      const float* qh = q + size_t(h0 + h) * d_kv;
      const float* kh = kj + size_t(h0 + h) * d_kv;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int x = 0; x < d_kv; ++x) dot += qh[x] * kh[x];
      if (bias) dot += bias[size_t(h0 + h) * bias_stride + j];
      score = dot;
    }
  }
  for (int h = 0; h < heads; ++h) {
    float* row = scores + size_t(h) * visible;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < visible; ++j) max_score = std::max(max_score, row[j]);
    inv[h] = float(1.0 / exp_shifted(row, visible, max_score));
  }
  for (int h = 0; h < heads; ++h)
    for (int x = 0; x < d_kv; ++x) ctx[size_t(h0 + h) * d_kv + x] = 0.0f;
  for (int j = 0; j < visible; ++j) {
    const float* vj = v + size_t(j) * kv_stride;
    for (int h = 0; h < heads; ++h) {
      const float p = scores[size_t(h) * visible + j] * inv[h];
      if (p == 0.0f) continue;
      const float* vh = vj + size_t(h0 + h) * d_kv;
      float* c = ctx + size_t(h0 + h) * d_kv;
#pragma omp simd
      for (int x = 0; x < d_kv; ++x) c[x] += p * vh[x];
    }
  }
}

// softmax(scores + bias) in place over one query's keys 0..visible-1 (masked keys and keys past
// `visible` get 0), the sum in double as attend_heads does.
MOE_SIMD_CLONES void softmax_row(int keys, int visible, const float* bias, const uint8_t* key_valid,
                                 float* scores) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < keys; ++j) {
    const bool seen = j < visible && (!key_valid || key_valid[j]);
    scores[j] =
        seen ? scores[j] + (bias ? bias[j] : 0.0f) : -std::numeric_limits<float>::infinity();
    max_score = std::max(max_score, scores[j]);
  }
  const double sum = exp_shifted(scores, keys, max_score);
  const float inv = float(1.0 / sum);
  for (int j = 0; j < keys; ++j) scores[j] *= inv;
}

// Many queries at once (a prefill, a teacher-forced decoder): per head, the scores q·kᵀ and the
// context p·v are two GEMMs, in place of a dot product per (query, key) pair, each summed across
// vector lanes. Only keys up to the last valid one take part, so a sequence's result does not
// depend on how far its batch is padded.
void attend_many(const AttentionShape& s, const float* q, int q_stride, const float* k,
                 const float* v, int kv_stride, const float* bias, const uint8_t* key_valid,
                 float* ctx, int ctx_stride) {
  int keys = s.causal ? std::min(s.keys, s.first_query + s.queries) : s.keys;
  if (key_valid)
    while (keys > 0 && !key_valid[keys - 1]) --keys;
  parallel_for(s.heads, [&](int first, int last) {
    std::vector<float> scores(size_t(s.queries) * std::max(keys, 1));
    for (int h = first; h < last; ++h) {
      float* out = ctx + h * s.d_kv;
      if (keys == 0) {  // nothing to attend to: HF's softmax over all -inf gives NaN; so does this
        for (int i = 0; i < s.queries; ++i)
          for (int x = 0; x < s.d_kv; ++x)
            out[size_t(i) * ctx_stride + x] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      sgemm_one_thread(true, s.queries, keys, s.d_kv, q + h * s.d_kv, q_stride, k + h * s.d_kv,
                       kv_stride, 0.0f, scores.data(), keys);
      for (int i = 0; i < s.queries; ++i) {
        const int visible = s.causal ? std::min(keys, s.first_query + i + 1) : keys;
        softmax_row(keys, visible, bias ? bias + (size_t(h) * s.queries + i) * s.keys : nullptr,
                    key_valid, scores.data() + size_t(i) * keys);
      }
      sgemm_one_thread(false, s.queries, s.d_kv, keys, scores.data(), keys, v + h * s.d_kv,
                       kv_stride, 0.0f, out, ctx_stride);
    }
  });
}

}  // namespace

// Queries from which attention runs as GEMMs: a decode step's one query per sequence stays with
// attend_heads (its keys are read once either way).
constexpr int kGemmQueries = 8;

void attend(const AttentionShape& s, const float* q, int q_stride, const float* k, const float* v,
            int kv_stride, const float* bias, const uint8_t* key_valid, float* ctx,
            int ctx_stride) {
  if (s.queries >= kGemmQueries)
    return attend_many(s, q, q_stride, k, v, kv_stride, bias, key_valid, ctx, ctx_stride);
  parallel_for(s.heads, [&](int first, int last) {
    std::vector<float> scratch(size_t(last - first) * (s.keys + 1));
    for (int i = 0; i < s.queries; ++i) {
      const int visible = s.causal ? std::min(s.keys, s.first_query + i + 1) : s.keys;
      attend_heads(s.d_kv, first, last, visible, q + size_t(i) * q_stride, k, v, kv_stride,
                   bias ? bias + size_t(i) * s.keys : nullptr, s.queries * s.keys, key_valid,
                   scratch.data(), ctx + size_t(i) * ctx_stride);
    }
  });
}

}  // namespace moe
