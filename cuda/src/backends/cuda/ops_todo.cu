// Ops of the CUDA backend that have no kernel yet: they refuse with L2D_ERR_UNSUPPORTED so a model
// reports exactly which op is missing instead of computing garbage. (Tracked in issue 7.)
#include "backend_cuda.h"

namespace l2d::cuda {

#define L2D_CUDA_TODO(op) fail(L2D_ERR_UNSUPPORTED, "the CUDA backend has no kernel for ", op, " yet")

void CudaBackend::fill(Tensor&, float) { L2D_CUDA_TODO("fill"); }
Tensor CudaBackend::conv2d(const Tensor&, const Tensor&, const Tensor*, const Conv2dParams&) { L2D_CUDA_TODO("conv2d"); }
Tensor CudaBackend::conv_transpose2d(const Tensor&, const Tensor&, const Tensor*, int) { L2D_CUDA_TODO("conv_transpose2d"); }
Tensor CudaBackend::linear(const Tensor&, const Tensor&, const Tensor*) { L2D_CUDA_TODO("linear"); }
Tensor CudaBackend::matmul(const Tensor&, const Tensor&) { L2D_CUDA_TODO("matmul"); }
Tensor CudaBackend::group_norm(const Tensor&, int, const Tensor&, const Tensor&, float, bool) { L2D_CUDA_TODO("group_norm"); }
Tensor CudaBackend::layer_norm(const Tensor&, const Tensor&, const Tensor&, float) { L2D_CUDA_TODO("layer_norm"); }
Tensor CudaBackend::attention(const Tensor&, const Tensor&, const Tensor&, int, AttnMask) { L2D_CUDA_TODO("attention"); }
Tensor CudaBackend::stream_temporal_attention(const Tensor&, const Tensor&, const Tensor&, Tensor&, const Tensor&,
                                              const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                              const Tensor&, int) {
  L2D_CUDA_TODO("stream_temporal_attention");
}
Tensor CudaBackend::unary(const Tensor&, Unary, float, float) { L2D_CUDA_TODO("unary"); }
Tensor CudaBackend::binary(const Tensor&, const Tensor&, Binary) { L2D_CUDA_TODO("binary"); }
Tensor CudaBackend::geglu(const Tensor&) { L2D_CUDA_TODO("geglu"); }
Tensor CudaBackend::permute(const Tensor&, const std::vector<int>&) { L2D_CUDA_TODO("permute"); }
Tensor CudaBackend::concat(const std::vector<Tensor>&, int) { L2D_CUDA_TODO("concat"); }
Tensor CudaBackend::slice(const Tensor&, int, int64_t, int64_t, int64_t) { L2D_CUDA_TODO("slice"); }
void CudaBackend::write_slice(Tensor&, const Tensor&, const std::vector<int64_t>&) { L2D_CUDA_TODO("write_slice"); }
Tensor CudaBackend::upsample_nearest(const Tensor&, int, int) { L2D_CUDA_TODO("upsample_nearest"); }
Tensor CudaBackend::resize_bilinear(const Tensor&, int, int, bool) { L2D_CUDA_TODO("resize_bilinear"); }
Tensor CudaBackend::max_pool2d(const Tensor&, int, const Conv2dParams&) { L2D_CUDA_TODO("max_pool2d"); }
Tensor CudaBackend::embedding(const Tensor&, const Tensor&) { L2D_CUDA_TODO("embedding"); }
Tensor CudaBackend::minmax_normalize(const Tensor&) { L2D_CUDA_TODO("minmax_normalize"); }

}  // namespace l2d::cuda
