#include "../common.cuh"
#include "reduce.cuh"

namespace l2d::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;

template <typename T>
static __global__ void minmax_partial_kernel(const T* __restrict__ x, int64_t n, float* __restrict__ partials) {
  __shared__ float smn[kThreads / 32], smx[kThreads / 32];
  float mn = INFINITY, mx = -INFINITY;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = to_f(x[i]);
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
  }
  mn = warp_min(mn);
  mx = warp_max(mx);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    smn[warp] = mn;
    smx[warp] = mx;
  }
  __syncthreads();
  if (warp == 0) {
    mn = lane < kThreads / 32 ? smn[lane] : INFINITY;
    mx = lane < kThreads / 32 ? smx[lane] : -INFINITY;
    mn = warp_min(mn);
    mx = warp_max(mx);
    if (lane == 0) {
      partials[2 * blockIdx.x] = mn;
      partials[2 * blockIdx.x + 1] = mx;
    }
  }
}

template <typename T>
static __global__ void minmax_apply_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                                           const float* __restrict__ partials, int nparts) {
  __shared__ float smn[kThreads / 32], smx[kThreads / 32];
  __shared__ float s_min, s_range;
  float mn = INFINITY, mx = -INFINITY;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) {
    mn = fminf(mn, partials[2 * i]);
    mx = fmaxf(mx, partials[2 * i + 1]);
  }
  mn = warp_min(mn);
  mx = warp_max(mx);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    smn[warp] = mn;
    smx[warp] = mx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      smn[0] = fminf(smn[0], smn[w]);
      smx[0] = fmaxf(smx[0], smx[w]);
    }
    s_min = smn[0];
    s_range = smx[0] - smn[0];
  }
  __syncthreads();
  const float lo = s_min, range = s_range;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f<T>((to_f(x[i]) - lo) / range);
}

template <typename T>
void run(const void* x, void* y, int64_t n, float* scratch, cudaStream_t s) {
  const int parts = minmax_partials(n);
  minmax_partial_kernel<T><<<parts, kThreads, 0, s>>>(static_cast<const T*>(x), n, scratch);
  CUDA_CHECK_LAUNCH();
  const int64_t b = CEIL_DIV(n, int64_t(kThreads));
  const unsigned blocks = unsigned(b > (1 << 20) ? (1 << 20) : b);
  minmax_apply_kernel<T><<<blocks, kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y), n, scratch, parts);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

int minmax_partials(int64_t n) {
  const int64_t b = CEIL_DIV(n, int64_t(kThreads) * 8);
  return int(b < 1 ? 1 : (b > kMaxPartials ? kMaxPartials : b));
}

void minmax_normalize_cuda(const void* x, void* y, int64_t n, float* scratch, bool fp16, cudaStream_t stream) {
  if (n <= 0) return;
  if (fp16) run<__half>(x, y, n, scratch, stream);
  else run<float>(x, y, n, scratch, stream);
}

}  // namespace l2d::cuda
