// elementwise.cuh: fill, unary, broadcasting binary and GEGLU on float storage (fp16 selects
// __half storage, otherwise float); all math in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

// Up to 8 dims (after collapsing): out index -> operand offsets via per-operand strides (0 on
// broadcast dims).
struct BroadcastDims {
  int ndim;
  int64_t shape[8];
  int64_t sa[8];
  int64_t sb[8];
};

void fill_cuda(void* y, int64_t n, float value, bool fp16, cudaStream_t stream);
// op is the int value of l2d::Unary.
void unary_cuda(const void* x, void* y, int64_t n, int op, float a, float b, bool fp16, cudaStream_t stream);
// op is the int value of l2d::Binary. dims == nullptr: same shape, elementwise over n.
void binary_cuda(const void* a, const void* b, void* y, int64_t n, const BroadcastDims* dims, int op, bool fp16,
                 cudaStream_t stream);
// x [rows, 2c] -> y [rows, c] = x[:, :c] * gelu_erf(x[:, c:]).
void geglu_cuda(const void* x, void* y, int64_t rows, int64_t c, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
