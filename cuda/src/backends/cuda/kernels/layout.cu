// Strided copy kernel: one element per thread per grid-stride step. The innermost iteration dim is
// the output's innermost dim for permute/slice (coalesced writes) and the source's for write_slice.
#include "../common.cuh"
#include "layout.cuh"

namespace l2d::cuda {
namespace {

template <typename W, int ND>
static __global__ void strided_copy_kernel(const W* __restrict__ src, W* __restrict__ dst, int64_t n, StridedCopy c) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, so = c.src_base, dof = c.dst_base;
#pragma unroll
    for (int k = ND - 1; k >= 0; --k) {
      if (k < c.ndim) {
        const int64_t idx = rem % c.shape[k];
        rem /= c.shape[k];
        so += idx * c.src_stride[k];
        dof += idx * c.dst_stride[k];
      }
    }
    dst[dof] = src[so];
  }
}

template <typename W>
void launch(const void* src, void* dst, int64_t n, const StridedCopy& c, cudaStream_t s) {
  const int64_t blocks64 = CEIL_DIV(n, int64_t(256));
  const unsigned blocks = unsigned(blocks64 > (1 << 20) ? (1 << 20) : blocks64);
  const W* sp = static_cast<const W*>(src);
  W* dp = static_cast<W*>(dst);
  if (c.ndim <= 2) strided_copy_kernel<W, 2><<<blocks, 256, 0, s>>>(sp, dp, n, c);
  else if (c.ndim <= 4) strided_copy_kernel<W, 4><<<blocks, 256, 0, s>>>(sp, dp, n, c);
  else strided_copy_kernel<W, 8><<<blocks, 256, 0, s>>>(sp, dp, n, c);
}

}  // namespace

void strided_copy_cuda(const void* src, void* dst, int elem_size, const StridedCopy& c, cudaStream_t stream) {
  L2D_ASSERT(c.ndim >= 1 && c.ndim <= 8 && (elem_size == 2 || elem_size == 4));
  int64_t n = 1;
  for (int d = 0; d < c.ndim; ++d) n *= c.shape[d];
  if (n <= 0) return;
  if (elem_size == 2) launch<uint16_t>(src, dst, n, c, stream);
  else launch<uint32_t>(src, dst, n, c, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
