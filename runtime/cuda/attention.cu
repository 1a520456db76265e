// T5 attention for one sequence, all heads (contract in kernels.hpp, CPU reference
// model/attention.cpp). One block per (query, head): scores for every visible key go to shared
// memory, a block-wide max and sum make the softmax, then each warp sums p·v over its share of the
// keys with one lane per output dimension, and the warps' partial sums are added.
// This is the straightforward kernel, not a flash-attention one: Switch's sequences are short
// (≤ 512 keys), and this runs at a small fraction of the layer's time next to the expert GEMMs.
#include <algorithm>

#include "runtime/cuda/cuda_check.hpp"
#include "runtime/cuda/device_math.cuh"
#include "runtime/cuda/kernels.hpp"

namespace moe::gpu {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxDimsPerLane = 4;  // d_kv ≤ 128
constexpr size_t kMaxSharedBytes = 200 * 1024;

__global__ void __launch_bounds__(kThreads)
    attend_kernel(AttentionShape s, const float* q, int q_stride, const float* k, const float* v,
                  int kv_stride, const float* bias, const uint8_t* key_valid, float* ctx,
                  int ctx_stride) {
  extern __shared__ float attn_shared[];
  float* q_row = attn_shared;                 // [d_kv]
  float* partial = q_row + s.d_kv;            // [kWarps, d_kv]
  float* scores = partial + kWarps * s.d_kv;  // [keys]
  __shared__ float scratch[32];

  const int i = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int visible = s.causal ? min(s.keys, s.first_query + i + 1) : s.keys;
  const float* qi = q + size_t(i) * q_stride + size_t(h) * s.d_kv;
  for (int x = threadIdx.x; x < s.d_kv; x += blockDim.x) q_row[x] = qi[x];
  __syncthreads();

  float local_max = -INFINITY;
  for (int j = threadIdx.x; j < visible; j += blockDim.x) {
    float score = -INFINITY;
    if (!key_valid || key_valid[j]) {
      const float* kj = k + size_t(j) * kv_stride + size_t(h) * s.d_kv;
      score = 0.0f;
      for (int x = 0; x < s.d_kv; ++x) score += q_row[x] * kj[x];
      if (bias) score += bias[(size_t(h) * s.queries + i) * s.keys + j];
    }
    scores[j] = score;
    local_max = fmaxf(local_max, score);
  }
  const float max_score = block_reduce<true>(local_max, scratch);

  float local_sum = 0.0f;
  for (int j = threadIdx.x; j < visible; j += blockDim.x) {
    const float e = expf(scores[j] - max_score);
    scores[j] = e;
    local_sum += e;
  }
  const float inv = 1.0f / block_reduce<false>(local_sum, scratch);  // ends with a barrier

  float acc[kMaxDimsPerLane] = {};
  for (int j = warp; j < visible; j += kWarps) {
    const float p = scores[j] * inv;
    const float* vj = v + size_t(j) * kv_stride + size_t(h) * s.d_kv;
#pragma unroll
    for (int r = 0; r < kMaxDimsPerLane; ++r) {
      const int x = lane + 32 * r;
      if (x < s.d_kv) acc[r] += p * vj[x];
    }
  }
#pragma unroll
  for (int r = 0; r < kMaxDimsPerLane; ++r) {
    const int x = lane + 32 * r;
    if (x < s.d_kv) partial[warp * s.d_kv + x] = acc[r];
  }
  __syncthreads();
  float* out = ctx + size_t(i) * ctx_stride + size_t(h) * s.d_kv;
  for (int x = threadIdx.x; x < s.d_kv; x += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += partial[w * s.d_kv + x];
    out[x] = sum;
  }
}

}  // namespace

void attend(const AttentionShape& s, const float* q, int q_stride, const float* k, const float* v,
            int kv_stride, const float* bias, const uint8_t* key_valid, float* ctx, int ctx_stride,
            Stream stream) {
  MOE_CHECK(s.heads >= 0 && s.queries >= 0 && s.keys >= 0 && s.d_kv > 0 &&
                s.d_kv <= 32 * kMaxDimsPerLane && s.first_query >= 0,
            "gpu::attend: unsupported shape (heads=", s.heads, " d_kv=", s.d_kv,
            " queries=", s.queries, " keys=", s.keys, " first_query=", s.first_query,
            "; d_kv must be ≤ ", 32 * kMaxDimsPerLane, ")");
  if (s.heads == 0 || s.queries == 0) return;
  MOE_CHECK(s.keys > 0, "gpu::attend: no keys for ", s.queries, " queries");
  const size_t shared = sizeof(float) * (size_t(s.d_kv) * (1 + kWarps) + size_t(s.keys));
  MOE_CHECK(shared <= kMaxSharedBytes, "gpu::attend: ", s.keys,
            " keys exceed the kernel's shared memory (", kMaxSharedBytes, " bytes)");
  if (shared > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(attend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(shared)));
  const dim3 grid(unsigned(s.queries), unsigned(s.heads));
  attend_kernel<<<grid, kThreads, shared, stream>>>(s, q, q_stride, k, v, kv_stride, bias,
                                                    key_valid, ctx, ctx_stride);
  CUDA_CHECK_LAUNCH();
}

}  // namespace moe::gpu
