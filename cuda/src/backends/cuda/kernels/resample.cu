// One thread per output element (grid-stride), output-major so writes are coalesced.
#include "../common.cuh"
#include "resample.cuh"

namespace l2d::cuda {
namespace {

inline unsigned grid_for(int64_t n) {
  const int64_t b = CEIL_DIV(n, int64_t(256));
  return unsigned(b > (1 << 20) ? (1 << 20) : b);
}

template <typename T>
static __global__ void upsample_nearest_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int H, int W, int Ho,
                                               int Wo) {
  // PyTorch "nearest": src = floor(dst * (in / out)) with the scale computed in fp32.
  const float sh = float(H) / float(Ho), sw = float(W) / float(Wo);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int ox = int(i % Wo);
    const int64_t t = i / Wo;
    const int oy = int(t % Ho);
    const int64_t c = t / Ho;
    const int iy = min(H - 1, int(floorf(__fmul_rn(float(oy), sh))));
    const int ix = min(W - 1, int(floorf(__fmul_rn(float(ox), sw))));
    y[i] = x[(c * H + iy) * W + ix];
  }
}

__device__ __forceinline__ float source_coord(int dst, int in, int out, bool align_corners) {
  if (align_corners) return out > 1 ? __fdiv_rn(__fmul_rn(float(dst), float(in - 1)), float(out - 1)) : 0.f;
  const float s = __fsub_rn(__fmul_rn(__fadd_rn(float(dst), 0.5f), __fdiv_rn(float(in), float(out))), 0.5f);
  return s < 0.f ? 0.f : s;
}

template <typename T>
static __global__ void resize_bilinear_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int H, int W, int Ho,
                                              int Wo, bool align_corners) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int ox = int(i % Wo);
    const int64_t t = i / Wo;
    const int oy = int(t % Ho);
    const int64_t c = t / Ho;
    const float sy = source_coord(oy, H, Ho, align_corners);
    const int y0 = min(int(sy), H - 1), y1 = min(y0 + 1, H - 1);
    const float ly = sy - float(y0);
    const float sx = source_coord(ox, W, Wo, align_corners);
    const int x0 = min(int(sx), W - 1), x1 = min(x0 + 1, W - 1);
    const float lx = sx - float(x0);
    const T* plane = x + c * H * W;
    const float top = to_f(plane[y0 * W + x0]) * (1.f - lx) + to_f(plane[y0 * W + x1]) * lx;
    const float bot = to_f(plane[y1 * W + x0]) * (1.f - lx) + to_f(plane[y1 * W + x1]) * lx;
    y[i] = from_f<T>(top * (1.f - ly) + bot * ly);
  }
}

template <typename T>
static __global__ void max_pool2d_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int H, int W, int Ho,
                                         int Wo, int kernel, int sh, int sw, int pt, int pl) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int ox = int(i % Wo);
    const int64_t t = i / Wo;
    const int oy = int(t % Ho);
    const int64_t c = t / Ho;
    const T* plane = x + c * H * W;
    float m = -INFINITY;
    for (int ky = 0; ky < kernel; ++ky) {
      const int iy = oy * sh - pt + ky;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < kernel; ++kx) {
        const int ix = ox * sw - pl + kx;
        if (ix >= 0 && ix < W) m = fmaxf(m, to_f(plane[iy * W + ix]));
      }
    }
    y[i] = from_f<T>(m);
  }
}

}  // namespace

void upsample_nearest_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, bool fp16,
                           cudaStream_t stream) {
  const int64_t n = NC * Ho * Wo;
  if (n <= 0) return;
  if (fp16)
    upsample_nearest_kernel<__half><<<grid_for(n), 256, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, H, W, Ho, Wo);
  else
    upsample_nearest_kernel<float><<<grid_for(n), 256, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), n, H, W, Ho, Wo);
  CUDA_CHECK_LAUNCH();
}

void resize_bilinear_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, bool align_corners,
                          bool fp16, cudaStream_t stream) {
  const int64_t n = NC * Ho * Wo;
  if (n <= 0) return;
  if (fp16)
    resize_bilinear_kernel<__half><<<grid_for(n), 256, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, H, W, Ho, Wo, align_corners);
  else
    resize_bilinear_kernel<float><<<grid_for(n), 256, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), n, H, W, Ho, Wo, align_corners);
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, int kernel, int stride_h,
                     int stride_w, int pad_top, int pad_left, bool fp16, cudaStream_t stream) {
  const int64_t n = NC * Ho * Wo;
  if (n <= 0) return;
  if (fp16)
    max_pool2d_kernel<__half><<<grid_for(n), 256, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, H, W, Ho, Wo, kernel, stride_h, stride_w, pad_top, pad_left);
  else
    max_pool2d_kernel<float><<<grid_for(n), 256, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), n, H, W, Ho, Wo, kernel, stride_h, stride_w, pad_top, pad_left);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
