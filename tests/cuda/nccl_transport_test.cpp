// The NCCL data plane on one GPU: a one-rank communicator sends blocks to itself (NCCL
// point-to-point to self), so the staging, grouping and waiting run for real. Two ranks need two
// GPUs; the MPI tests cover the same exchange pattern over MPI.
#include "runtime/cuda/nccl_transport.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/error.hpp"

namespace moe {
namespace {

bool have_gpu(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = cudaGetErrorString(e);
    return false;
  }
  if (n == 0) *why = "no CUDA device";
  return n > 0;
}

}  // namespace

TEST(NcclTransport, OneRankSendsBlocksToItselfExactly) {
  std::string why;
  if (!have_gpu(&why)) GTEST_SKIP() << "no GPU here: " << why;
  NcclTransport t(0, 1, 0, 30, [](void*, size_t) {});
  std::vector<float> a(1000), b(7), got_a(1000, NAN), got_b(7, NAN);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i);
  t.exchange({{0, a.data(), a.size()}, {0, b.data(), b.size()}},
             {{0, got_a.data(), got_a.size()}, {0, got_b.data(), got_b.size()}},
             Deadline::after(30), "a self-exchange");
  EXPECT_EQ(got_a, a);
  EXPECT_EQ(got_b, b);
  // Empty blocks and an empty exchange are fine (every rank takes part, even with nothing).
  t.exchange({{0, a.data(), 0}}, {{0, got_a.data(), 0}}, Deadline::after(30), "an empty exchange");
}

}  // namespace moe
