// embedding.cuh: row gather table[ids] with a device-side range check (see DeviceError).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

struct DeviceError;

// ids [n] (I32), table [V, D] -> y [n, D]. Out-of-range ids are clamped and reported in err.
void embedding_cuda(const int32_t* ids, const void* table, void* y, int64_t n, int64_t V, int64_t D, DeviceError* err,
                    bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
