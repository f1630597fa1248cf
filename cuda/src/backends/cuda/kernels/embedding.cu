// One thread per output element; the row id is re-read per element (ids are tiny and cached).
#include "../common.cuh"
#include "embedding.cuh"

namespace l2d::cuda {
namespace {

template <typename T>
static __global__ void embedding_kernel(const int32_t* __restrict__ ids, const T* __restrict__ table, T* __restrict__ y,
                                        int64_t n, int64_t V, int64_t D, DeviceError* err) {
  const int64_t total = n * D;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / D, d = i - row * D;
    int64_t id = ids[row];
    if (id < 0 || id >= V) {
      if (d == 0) report_error(err, kErrEmbeddingId, int(id), int(V));
      id = id < 0 ? 0 : V - 1;
    }
    y[i] = table[id * D + d];
  }
}

}  // namespace

void embedding_cuda(const int32_t* ids, const void* table, void* y, int64_t n, int64_t V, int64_t D, DeviceError* err,
                    bool fp16, cudaStream_t stream) {
  const int64_t total = n * D;
  if (total <= 0) return;
  L2D_ASSERT(V > 0);
  const int64_t b = CEIL_DIV(total, int64_t(256));
  const unsigned blocks = unsigned(b > (1 << 20) ? (1 << 20) : b);
  if (fp16)
    embedding_kernel<__half><<<blocks, 256, 0, stream>>>(ids, static_cast<const __half*>(table), static_cast<__half*>(y), n, V, D, err);
  else
    embedding_kernel<float><<<blocks, 256, 0, stream>>>(ids, static_cast<const float*>(table), static_cast<float*>(y), n, V, D, err);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
