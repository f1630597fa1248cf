// Streaming I/O ops of the CUDA backend: Philox noise generated on the device, and the frame
// conversions (uint8 HWC <-> float NCHW) with the frame as the only bytes crossing the bus.
#include <cmath>

#include "../../core/philox.h"
#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {

template <typename T>
static __global__ void random_normal_kernel(T* out, int64_t n, uint32_t seed, uint32_t stream, uint32_t draw) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_f<T>(philox::normal_at(uint64_t(i), seed, stream, draw));
}

Tensor CudaBackend::random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) {
  Tensor y = empty(shape);
  const int64_t n = y.numel();
  if (n == 0) return y;
  const unsigned blocks = unsigned(CEIL_DIV(n, 256));
  if (fp16_) random_normal_kernel<<<blocks, 256, 0, stream_>>>(y.ptr<__half>(), n, seed, stream, draw);
  else random_normal_kernel<<<blocks, 256, 0, stream_>>>(y.ptr<float>(), n, seed, stream, draw);
  CUDA_CHECK_LAUNCH();
  return y;
}

template <typename T>
static __global__ void image_from_u8_kernel(const uint8_t* in, T* out, int64_t n, int64_t hw, int channels) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over n * 3 * hw outputs
  if (i >= n * 3 * hw) return;
  const int64_t px = i % hw, c = (i / hw) % 3, img = i / (3 * hw);
  out[i] = from_f<T>(float(in[(img * hw + px) * channels + c]) / 255.f);
}

Tensor CudaBackend::image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) {
  L2D_REQUIRE(channels == 3 || channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", channels);
  const size_t bytes = size_t(n * h * w * channels);
  Tensor staging(this, DType::I32, {int64_t((bytes + 3) / 4)});  // raw bytes in a pooled buffer
  upload_bytes(staging, host, bytes);  // through pinned staging: `host` is free on return, no wait
  return image_from_bytes(staging, n, h, w, channels);
}

Tensor CudaBackend::image_from_bytes(const Tensor& bytes, int64_t n, int64_t h, int64_t w, int channels) {
  L2D_REQUIRE(channels == 3 || channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", channels);
  L2D_ASSERT(size_t(n * h * w * channels) <= bytes.bytes());
  Tensor y = empty({n, 3, h, w});
  const int64_t total = n * 3 * h * w;
  const unsigned blocks = unsigned(CEIL_DIV(total, 256));
  const uint8_t* src = static_cast<const uint8_t*>(bytes.data());
  if (fp16_) image_from_u8_kernel<<<blocks, 256, 0, stream_>>>(src, y.ptr<__half>(), n, h * w, channels);
  else image_from_u8_kernel<<<blocks, 256, 0, stream_>>>(src, y.ptr<float>(), n, h * w, channels);
  CUDA_CHECK_LAUNCH();
  return y;
}

template <typename T>
static __global__ void image_to_hwc_kernel(const T* in, float* out_f32, uint8_t* out_u8, int64_t n, int64_t hw) {
  const int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over n * hw * 3 outputs (HWC)
  if (o >= n * hw * 3) return;
  const int64_t c = o % 3, px = (o / 3) % hw, img = o / (3 * hw);
  const float v = to_f(in[(img * 3 + c) * hw + px]);
  out_f32[o] = v;
  out_u8[o] = uint8_t(nearbyintf(255.f * fminf(1.f, fmaxf(0.f, v))));
}

void CudaBackend::image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) {
  L2D_ASSERT(x.ndim() == 4 && x.dim(1) == 3);
  const int64_t n = x.dim(0), hw = x.dim(2) * x.dim(3), total = n * hw * 3;
  Tensor f32(this, DType::F32, {total});
  Tensor u8(this, DType::I32, {(total + 3) / 4});
  const unsigned blocks = unsigned(CEIL_DIV(total, 256));
  uint8_t* u8p = static_cast<uint8_t*>(u8.data());
  if (fp16_) image_to_hwc_kernel<<<blocks, 256, 0, stream_>>>(x.ptr<__half>(), f32.ptr<float>(), u8p, n, hw);
  else image_to_hwc_kernel<<<blocks, 256, 0, stream_>>>(x.ptr<float>(), f32.ptr<float>(), u8p, n, hw);
  CUDA_CHECK_LAUNCH();
  if (out_f32) CUDA_COPY(cudaMemcpyAsync(out_f32, f32.data(), size_t(total) * 4, cudaMemcpyDeviceToHost, stream_));
  if (out_u8) CUDA_COPY(cudaMemcpyAsync(out_u8, u8p, size_t(total), cudaMemcpyDeviceToHost, stream_));
  // The frame's one sync, which also reads the device error flags (a bad KV-cache or PE index met
  // by any kernel of this frame is reported here, not only at some later to_host).
  CudaBackend::synchronize();
}

}  // namespace l2d::cuda
