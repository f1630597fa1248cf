// norm.cuh: group norm (optional fused SiLU) and layer norm; statistics in fp32, two passes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

// x/y [N, C, S] (S = product of spatial dims); gamma/beta [C].
void group_norm_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t N, int64_t C, int64_t S,
                     int groups, float eps, bool silu, bool fp16, cudaStream_t stream);
// The same normalisation written as tokens: x [N, C, S] -> y [N, S, C] (Backend::group_norm_tokens).
void group_norm_tokens_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t N, int64_t C,
                            int64_t S, int groups, float eps, bool silu, bool fp16, cudaStream_t stream);
// x/y [rows, C]; gamma/beta [C].
void layer_norm_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t C, float eps,
                     bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
