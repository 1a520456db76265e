// Device-side helpers shared by the kernels: float/bf16 loads and stores, block-wide reductions,
// and the launch-size arithmetic. Included only from .cu files.
#pragma once

#include <cuda_bf16.h>

#include <cstddef>

#include "runtime/cuda/cuda_types.hpp"

namespace moe::gpu {

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const bf16* p) {
  return __bfloat162float(__ushort_as_bfloat16(p->bits));
}
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(bf16* p, float v) {
  p->bits = __bfloat16_as_ushort(__float2bfloat16(v));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block gets the result. blockDim.x is a multiple of 32, at most 1024;
// `scratch` holds 32 floats. Ends with a barrier, so scratch may be reused right after.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
    w = kMax ? warp_max(w) : warp_sum(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  const float result = scratch[0];
  __syncthreads();
  return result;
}

// Blocks for a grid-stride loop over n elements: enough to fill the chip, never zero.
inline unsigned grid_for(size_t n, unsigned threads) {
  const size_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 4096 ? (blocks == 0 ? 1 : blocks) : 4096);
}

}  // namespace moe::gpu
