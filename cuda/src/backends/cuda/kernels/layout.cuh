// layout.cuh: one strided N-d copy serves permute, slice, write_slice and concat. The copy walks
// the (collapsed) iteration shape in C order; each side has its own element strides and base.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

struct StridedCopy {
  int ndim;                // 1..8
  int64_t shape[8];        // iteration shape
  int64_t src_stride[8];   // in elements
  int64_t dst_stride[8];
  int64_t src_base, dst_base;
};

// elem_size: 2 or 4 bytes (F16, F32, I32 are all moved as raw words).
void strided_copy_cuda(const void* src, void* dst, int elem_size, const StridedCopy& c, cudaStream_t stream);

}  // namespace l2d::cuda
