// Group norm: one block (512 threads) per (n, group); the group's channels are contiguous in NCHW,
// so each pass is a flat coalesced sweep: sum -> mean, sum of squared deviations -> rstd (biased
// variance, exact two-pass like the CPU oracle), then normalise + affine (+ SiLU). The tokens
// variant writes each value at its transposed index [n, s, ch] (strided stores: the simple,
// verified form; norm_fast.cu transposes through shared memory).
// Layer norm: one warp per row, the same two passes plus the write, 8 rows per 256-thread block.
#include "../common.cuh"
#include "norm.cuh"

namespace l2d::cuda {
namespace {

constexpr int kGnThreads = 512;

// Sum over the block; every thread gets the result. red must hold 32 floats.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? red[lane] : 0.f;
  t = warp_sum(t);
  return t;
}

// TOKENS: y is [N, S, C] (element (ch, s) of image n at (n * S + s) * C + ch) instead of NCHW.
template <typename T, bool TOKENS>
static __global__ void __launch_bounds__(kGnThreads) group_norm_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                                                       const T* __restrict__ beta, T* __restrict__ y,
                                                                       int64_t C, int64_t S, int groups, float eps,
                                                                       bool silu) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x / groups, grp = blockIdx.x % groups;
  const int64_t cg = C / groups, count = cg * S;
  const int64_t base = (n * C + grp * cg) * S;
  const T* xp = x + base;
  T* yp = TOKENS ? y + n * S * C + grp * cg : y + base;

  float s = 0.f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += to_f(xp[i]);
  const float mean = block_sum(s, red) / float(count);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const float d = to_f(xp[i]) - mean;
    v += d * d;
  }
  const float var = block_sum(v, red) / float(count);
  const float rstd = 1.f / sqrtf(var + eps);
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t ch = grp * cg + i / S;
    float o = (to_f(xp[i]) - mean) * rstd * to_f(gamma[ch]) + to_f(beta[ch]);
    if (silu) o = o / (1.f + expf(-o));
    if constexpr (TOKENS) yp[(i % S) * C + i / S] = from_f<T>(o);  // position i % S, channel i / S of the group
    else yp[i] = from_f<T>(o);
  }
}

template <typename T>
static __global__ void layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                         T* __restrict__ y, int64_t rows, int64_t C, float eps) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // whole warp leaves together
  const T* xp = x + row * C;
  T* yp = y + row * C;
  float s = 0.f;
  for (int64_t i = lane; i < C; i += 32) s += to_f(xp[i]);
  const float mean = warp_sum(s) / float(C);
  float v = 0.f;
  for (int64_t i = lane; i < C; i += 32) {
    const float d = to_f(xp[i]) - mean;
    v += d * d;
  }
  const float rstd = 1.f / sqrtf(warp_sum(v) / float(C) + eps);
  for (int64_t i = lane; i < C; i += 32)
    yp[i] = from_f<T>((to_f(xp[i]) - mean) * rstd * to_f(gamma[i]) + to_f(beta[i]));
}

template <typename T, bool TOKENS>
void gn(const void* x, const void* g, const void* b, void* y, int64_t N, int64_t C, int64_t S, int groups, float eps,
        bool silu, cudaStream_t s) {
  group_norm_kernel<T, TOKENS><<<unsigned(N * groups), kGnThreads, 0, s>>>(static_cast<const T*>(x), static_cast<const T*>(g),
                                                                     static_cast<const T*>(b), static_cast<T*>(y), C, S,
                                                                     groups, eps, silu);
}

template <typename T>
void ln(const void* x, const void* g, const void* b, void* y, int64_t rows, int64_t C, float eps, cudaStream_t s) {
  layer_norm_kernel<T><<<unsigned(CEIL_DIV(rows, int64_t(8))), 256, 0, s>>>(
      static_cast<const T*>(x), static_cast<const T*>(g), static_cast<const T*>(b), static_cast<T*>(y), rows, C, eps);
}

}  // namespace

void group_norm_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t N, int64_t C, int64_t S,
                     int groups, float eps, bool silu, bool fp16, cudaStream_t stream) {
  L2D_ASSERT(groups > 0 && C % groups == 0 && N * groups < (int64_t(1) << 31));
  if (N * C * S <= 0) return;
  if (fp16) gn<__half, false>(x, gamma, beta, y, N, C, S, groups, eps, silu, stream);
  else gn<float, false>(x, gamma, beta, y, N, C, S, groups, eps, silu, stream);
  CUDA_CHECK_LAUNCH();
}

void group_norm_tokens_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t N, int64_t C,
                            int64_t S, int groups, float eps, bool silu, bool fp16, cudaStream_t stream) {
  L2D_ASSERT(groups > 0 && C % groups == 0 && N * groups < (int64_t(1) << 31));
  if (N * C * S <= 0) return;
  if (fp16) gn<__half, true>(x, gamma, beta, y, N, C, S, groups, eps, silu, stream);
  else gn<float, true>(x, gamma, beta, y, N, C, S, groups, eps, silu, stream);
  CUDA_CHECK_LAUNCH();
}

void layer_norm_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t C, float eps,
                     bool fp16, cudaStream_t stream) {
  if (rows <= 0 || C <= 0) return;
  if (fp16) ln<__half>(x, gamma, beta, y, rows, C, eps, stream);
  else ln<float>(x, gamma, beta, y, rows, C, eps, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
