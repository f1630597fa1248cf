// common.cuh: helpers shared by the CUDA backend's kernels and launchers. CUDA_CHECK throws
// l2d::Error(L2D_ERR_BACKEND) (never exits: the library lives inside Deno).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../../core/device_tally.h"
#include "../../core/error.h"

#define CUDA_CHECK(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t err_ = (expr);                                                              \
    if (err_ != cudaSuccess)                                                                      \
      ::l2d::fail(err_ == cudaErrorMemoryAllocation ? L2D_ERR_OUT_OF_MEMORY : L2D_ERR_BACKEND,    \
                  "CUDA error in ", #expr, ": ", cudaGetErrorString(err_), " (", __FILE__, ":",   \
                  __LINE__, ")");                                                                 \
  } while (0)

// Launch-error check after <<<>>> (asynchronous errors surface at the next sync). Every launch site
// calls it exactly once per launch, so it also counts the launches (device_tally.h; the bench's
// launches per frame).
#define CUDA_CHECK_LAUNCH()                  \
  do {                                       \
    ++::l2d::thread_device_tally().kernels;  \
    CUDA_CHECK(cudaGetLastError());          \
  } while (0)

// A cudaMemcpy*/cudaMemset* call: checked, and counted as one copy in the thread's tally (the
// launch counters report copies apart from kernels: "1 graph launch + the copies" per frame).
#define CUDA_COPY(expr)        \
  do {                         \
    CUDA_CHECK(expr);          \
    ::l2d::tally_copy();       \
  } while (0)

// cudaStreamSynchronize, with the time blocked added to the thread's device-wait tally (the bench
// reports host milliseconds per frame = push time minus this).
#define CUDA_STREAM_WAIT(stream) CUDA_CHECK(::l2d::timed_device_wait([&] { return cudaStreamSynchronize(stream); }))

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

namespace l2d::cuda {

// Multiprocessor count of the CURRENT device (the guard made the context's device current), cached
// per device, not per process or thread: two contexts on different GPUs each get their own.
int device_sm_count();

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

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Data errors found inside kernels (an index outside its table): kernels cannot throw, so they
// clamp the index, keep computing, and record the FIRST error here; CudaBackend::synchronize()
// (and so to_host) reads it, clears it and throws L2D_ERR_INVALID_ARGUMENT.
enum DeviceErrorCode : int {
  kErrNone = 0,
  kErrEmbeddingId = 1,       // value = token id, limit = vocabulary size
  kErrStreamUpdateIdx = 2,   // value = update_idx[r], limit = window
  kErrStreamPeIdx = 3,       // value = pe_idx[r, s], limit = max_len
};
struct DeviceError {
  int code;
  int value;
  int limit;
  int pad;
};
__device__ __forceinline__ void report_error(DeviceError* err, int code, int value, int limit) {
  if (atomicCAS(&err->code, 0, code) == 0) {
    err->value = value;
    err->limit = limit;
  }
}

}  // namespace l2d::cuda
