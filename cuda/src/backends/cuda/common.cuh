// common.cuh: helpers shared by the CUDA backend's kernels and launchers. CUDA_CHECK throws
// l2d::Error(L2D_ERR_BACKEND) (never exits: the library lives inside Deno).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../../core/error.h"

#define CUDA_CHECK(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t err_ = (expr);                                                              \
    if (err_ != cudaSuccess)                                                                      \
      ::l2d::fail(err_ == cudaErrorMemoryAllocation ? L2D_ERR_OUT_OF_MEMORY : L2D_ERR_BACKEND,    \
                  "CUDA error in ", #expr, ": ", cudaGetErrorString(err_), " (", __FILE__, ":",   \
                  __LINE__, ")");                                                                 \
  } while (0)

// Launch-error check after <<<>>> (asynchronous errors surface at the next sync).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

namespace l2d::cuda {

// Storage <-> float conversions for kernels templated on the storage type (float or __half).
template <typename T>
__device__ __forceinline__ float to_f(T v);
template <>
__device__ __forceinline__ float to_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

}  // namespace l2d::cuda
