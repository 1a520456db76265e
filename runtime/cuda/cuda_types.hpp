// Plain-C++ names for the few CUDA things that cross into code built without CUDA headers: the
// stream handle and the bfloat16 storage type, with host conversions that round like the device.
#pragma once

#include <cstdint>
#include <cstring>

// cudaStream_t is `CUstream_st*`; declaring the struct keeps CUDA headers out of plain C++.
struct CUstream_st;

namespace moe::gpu {

using Stream = CUstream_st*;  // nullptr is the legacy default stream

// bfloat16 as stored (same size and layout as __nv_bfloat16): the top 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

// Round to nearest even, as __float2bfloat16 does; NaN stays NaN.
inline bf16 to_bf16(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}

inline float to_float(bf16 value) {
  const uint32_t u = uint32_t(value.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace moe::gpu
