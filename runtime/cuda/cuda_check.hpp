// Check macros for the CUDA runtime, cuBLAS and NCCL: each failure becomes a moe::Error with
// file:line, the call that failed and the library's own message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "runtime/error.hpp"

#define CUDA_CHECK(expr)                                                         \
  do {                                                                           \
    const cudaError_t moe_cuda_status_ = (expr);                                 \
    if (moe_cuda_status_ != cudaSuccess)                                         \
      ::moe::detail::fail(__FILE__, __LINE__, "CUDA: ", #expr,                   \
                          " failed: ", cudaGetErrorName(moe_cuda_status_), " (", \
                          cudaGetErrorString(moe_cuda_status_), ")");            \
  } while (0)

// After a kernel launch: a bad configuration shows up here, not at the next synchronisation.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(expr)                                                            \
  do {                                                                                \
    const cublasStatus_t moe_cublas_status_ = (expr);                                 \
    if (moe_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::moe::detail::fail(__FILE__, __LINE__, "cuBLAS: ", #expr,                      \
                          " failed: ", cublasGetStatusName(moe_cublas_status_), " (", \
                          cublasGetStatusString(moe_cublas_status_), ")");            \
  } while (0)

#define NCCL_CHECK(expr)                                                                        \
  do {                                                                                          \
    const ncclResult_t moe_nccl_status_ = (expr);                                               \
    if (moe_nccl_status_ != ncclSuccess)                                                        \
      ::moe::detail::fail(__FILE__, __LINE__, "NCCL: ", #expr,                                  \
                          " failed: ", ncclGetErrorString(moe_nccl_status_), " (ncclResult_t ", \
                          static_cast<int>(moe_nccl_status_), ")");                             \
  } while (0)
