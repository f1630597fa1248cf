// Elementwise kernels: grid-stride loops, one element per thread per step, fp32 math.
#include "../common.cuh"
#include "elementwise.cuh"

namespace l2d::cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n) {
  const int64_t blocks = CEIL_DIV(n, int64_t(kThreads));
  return unsigned(blocks < 1 ? 1 : (blocks > (1 << 20) ? (1 << 20) : blocks));
}

// Same enum order as l2d::Unary / l2d::Binary (backend.h).
enum UnaryOp { kSilu, kRelu, kGeluErf, kGeluTanh, kQuickGelu, kTanh, kSigmoid, kAffine, kClamp };
enum BinaryOp { kAdd, kSub, kMul, kDiv };

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

__device__ __forceinline__ float apply_unary(float x, int op, float a, float b) {
  switch (op) {
    case kSilu: return x / (1.f + expf(-x));
    case kRelu: return x > 0.f ? x : 0.f;
    case kGeluErf: return gelu_erf(x);
    case kGeluTanh: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case kQuickGelu: return x / (1.f + expf(-1.702f * x));
    case kTanh: return tanhf(x);
    case kSigmoid: return 1.f / (1.f + expf(-x));
    case kAffine: return a * x + b;
    case kClamp: return fminf(fmaxf(x, a), b);
  }
  return x;
}

__device__ __forceinline__ float apply_binary(float x, float y, int op) {
  switch (op) {
    case kAdd: return x + y;
    case kSub: return x - y;
    case kMul: return x * y;
    case kDiv: return x / y;
  }
  return x;
}

template <typename T>
static __global__ void fill_kernel(T* y, int64_t n, float value) {
  const T v = from_f<T>(value);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) y[i] = v;
}

template <typename T>
static __global__ void unary_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int op, float a, float b) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f<T>(apply_unary(to_f(x[i]), op, a, b));
}

template <typename T>
static __global__ void binary_same_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t n,
                                          int op) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f<T>(apply_binary(to_f(a[i]), to_f(b[i]), op));
}

template <typename T>
static __global__ void binary_bcast_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t n,
                                           BroadcastDims d, int op) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      const int64_t idx = rem % d.shape[k];
      rem /= d.shape[k];
      oa += idx * d.sa[k];
      ob += idx * d.sb[k];
    }
    y[i] = from_f<T>(apply_binary(to_f(a[oa]), to_f(b[ob]), op));
  }
}

template <typename T>
static __global__ void geglu_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t c) {
  const int64_t n = rows * c;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / c, j = i - r * c;
    const float h = to_f(x[r * 2 * c + j]);
    const float g = to_f(x[r * 2 * c + c + j]);
    y[i] = from_f<T>(h * gelu_erf(g));
  }
}

}  // namespace

void fill_cuda(void* y, int64_t n, float value, bool fp16, cudaStream_t stream) {
  if (n <= 0) return;
  if (fp16) fill_kernel<__half><<<grid_for(n), kThreads, 0, stream>>>(static_cast<__half*>(y), n, value);
  else fill_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(static_cast<float*>(y), n, value);
  CUDA_CHECK_LAUNCH();
}

void unary_cuda(const void* x, void* y, int64_t n, int op, float a, float b, bool fp16, cudaStream_t stream) {
  if (n <= 0) return;
  if (fp16)
    unary_kernel<__half><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, op, a, b);
  else
    unary_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), n, op, a, b);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
static void binary_t(const void* a, const void* b, void* y, int64_t n, const BroadcastDims* dims, int op, cudaStream_t s) {
  const T* ap = static_cast<const T*>(a);
  const T* bp = static_cast<const T*>(b);
  T* yp = static_cast<T*>(y);
  if (!dims) binary_same_kernel<T><<<grid_for(n), kThreads, 0, s>>>(ap, bp, yp, n, op);
  else binary_bcast_kernel<T><<<grid_for(n), kThreads, 0, s>>>(ap, bp, yp, n, *dims, op);
}

void binary_cuda(const void* a, const void* b, void* y, int64_t n, const BroadcastDims* dims, int op, bool fp16,
                 cudaStream_t stream) {
  if (n <= 0) return;
  if (fp16) binary_t<__half>(a, b, y, n, dims, op, stream);
  else binary_t<float>(a, b, y, n, dims, op, stream);
  CUDA_CHECK_LAUNCH();
}

void geglu_cuda(const void* x, void* y, int64_t rows, int64_t c, bool fp16, cudaStream_t stream) {
  const int64_t n = rows * c;
  if (n <= 0) return;
  if (fp16)
    geglu_kernel<__half><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), rows, c);
  else
    geglu_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), rows, c);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
