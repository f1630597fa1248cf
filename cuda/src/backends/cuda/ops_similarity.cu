// The similar-image filter on the device (Backend::image_cosine_similarity): the stream compares
// the fitted frame with its previous fitted frame, both already on the device, and reads back
// three sums (one small copy and one wait per frame, only while the filter is on).
#include <cmath>

#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 512;

// The fitted level of x = level / 255, mapped to [-1, 1] like frame_cosine_similarity.
__device__ __forceinline__ float unit_level(float x) {
  return rintf(255.f * fminf(1.f, fmaxf(0.f, x))) / 127.5f - 1.f;
}

// Sums v in the block (fp32); the result is valid in thread 0.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : 0.f;
  if (warp == 0) v = warp_sum(v);
  __syncthreads();  // `shared` is reused by the next call
  return v;
}

// partial[block] = (dot, |a|^2, |b|^2) over a grid-stride share of the n elements.
template <typename T>
__global__ void cosine_partials_kernel(const T* __restrict__ a, const T* __restrict__ b, int64_t n,
                                       float* __restrict__ partial) {
  __shared__ float shared[kThreads / 32];
  float dot = 0.f, na = 0.f, nb = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float va = unit_level(to_f(a[i])), vb = unit_level(to_f(b[i]));
    dot += va * vb;
    na += va * va;
    nb += vb * vb;
  }
  dot = block_sum(dot, shared);
  na = block_sum(na, shared);
  nb = block_sum(nb, shared);
  if (threadIdx.x == 0) {
    partial[blockIdx.x * 3 + 0] = dot;
    partial[blockIdx.x * 3 + 1] = na;
    partial[blockIdx.x * 3 + 2] = nb;
  }
}

// out[k] = sum over the blocks of partial[block * 3 + k], in a fixed order (deterministic).
__global__ void cosine_total_kernel(const float* __restrict__ partial, int blocks, float* __restrict__ out) {
  __shared__ float shared[kThreads / 32];
  for (int k = 0; k < 3; ++k) {
    float s = 0.f;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) s += partial[i * 3 + k];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) out[k] = s;
  }
}

}  // namespace

double CudaBackend::image_cosine_similarity(const Tensor& a, const Tensor& b) {
  L2D_REQUIRE(a.ndim() == 4 && a.dim(0) == 1 && a.dim(1) == 3 && a.shape() == b.shape() && a.dtype() == b.dtype(),
              "image_cosine_similarity takes two [1, 3, H, W] images of one shape and dtype, got ",
              shape_str(a.shape()), " and ", shape_str(b.shape()));
  const int64_t n = a.numel();
  const int blocks = int(std::min<int64_t>(kMaxBlocks, std::max<int64_t>(1, CEIL_DIV(n, int64_t(kThreads) * 4))));
  Tensor partial(this, DType::F32, {int64_t(blocks) * 3});
  Tensor sums(this, DType::F32, {3});
  if (a.dtype() == DType::F16)
    cosine_partials_kernel<<<blocks, kThreads, 0, stream_>>>(a.ptr<__half>(), b.ptr<__half>(), n, partial.ptr<float>());
  else
    cosine_partials_kernel<<<blocks, kThreads, 0, stream_>>>(a.ptr<float>(), b.ptr<float>(), n, partial.ptr<float>());
  CUDA_CHECK_LAUNCH();
  cosine_total_kernel<<<1, kThreads, 0, stream_>>>(partial.ptr<float>(), blocks, sums.ptr<float>());
  CUDA_CHECK_LAUNCH();
  float s[3] = {0.f, 0.f, 0.f};
  download_bytes(sums, reinterpret_cast<uint8_t*>(s), sizeof(s));  // the wait (and the device-error check)
  const double dot = s[0], na = s[1], nb = s[2];
  if (na == 0 || nb == 0) return na == nb ? 1.0 : 0.0;  // as frame_cosine_similarity
  return dot / std::sqrt(na * nb);
}

}  // namespace l2d::cuda
