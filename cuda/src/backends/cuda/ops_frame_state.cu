// Per-frame state that lives on the device, so a captured graph of the stream step can be replayed
// unchanged: Philox noise whose draw index is read from a device counter, the counter update, and
// the KV-cache bookkeeping update (the same rule as the host's, kv_cache/kv_rule.h).
#include "../../core/philox.h"
#include "../../kv_cache/kv_rule.h"
#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {

template <typename T>
static __global__ void random_normal_counter_kernel(T* out, int64_t n, uint32_t seed, uint32_t stream,
                                                    const int32_t* counter, int32_t offset) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_f<T>(philox::normal_at(uint64_t(i), seed, stream, uint32_t(*counter + offset)));
}

Tensor CudaBackend::random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream, const Tensor& counter,
                                          int32_t offset) {
  L2D_ASSERT(counter.dtype() == DType::I32 && counter.numel() == 1);
  Tensor y = empty(shape);
  const int64_t n = y.numel();
  if (n == 0) return y;
  const unsigned blocks = unsigned(CEIL_DIV(n, 256));
  const int32_t* c = counter.ptr<int32_t>();
  if (fp16_) random_normal_counter_kernel<<<blocks, 256, 0, stream_>>>(y.ptr<__half>(), n, seed, stream, c, offset);
  else random_normal_counter_kernel<<<blocks, 256, 0, stream_>>>(y.ptr<float>(), n, seed, stream, c, offset);
  CUDA_CHECK_LAUNCH();
  return y;
}

static __global__ void counter_add_kernel(int32_t* counter, int32_t by) { *counter += by; }

void CudaBackend::counter_add(Tensor& counter, int32_t by) {
  L2D_ASSERT(counter.dtype() == DType::I32 && counter.numel() == 1);
  counter_add_kernel<<<1, 1, 0, stream_>>>(counter.ptr<int32_t>(), by);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
static __global__ void kv_advance_kernel(T* bias, int32_t* pe, int32_t* update_idx, int R, int W, int sink) {
  const int r = int(blockIdx.x) * blockDim.x + threadIdx.x;  // one thread per row (a handful)
  if (r < R) kv_advance_row(bias + int64_t(r) * W, pe + int64_t(r) * W, update_idx + r, W, sink);
}

void CudaBackend::kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) {
  L2D_ASSERT(bias.ndim() == 2 && pe_idx.shape() == bias.shape() && update_idx.numel() == bias.dim(0));
  L2D_ASSERT(pe_idx.dtype() == DType::I32 && update_idx.dtype() == DType::I32 && bias.dtype() == float_dtype());
  L2D_ASSERT(sink >= 0 && sink < bias.dim(1));
  const int R = int(bias.dim(0)), W = int(bias.dim(1));
  if (R == 0) return;
  const unsigned blocks = unsigned(CEIL_DIV(R, 64));
  if (fp16_)
    kv_advance_kernel<<<blocks, 64, 0, stream_>>>(bias.ptr<__half>(), pe_idx.ptr<int32_t>(), update_idx.ptr<int32_t>(),
                                                  R, W, sink);
  else
    kv_advance_kernel<<<blocks, 64, 0, stream_>>>(bias.ptr<float>(), pe_idx.ptr<int32_t>(), update_idx.ptr<int32_t>(),
                                                  R, W, sink);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
