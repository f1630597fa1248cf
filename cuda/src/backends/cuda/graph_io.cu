// The per-frame copies of the streaming path: the camera frame goes up and the output bytes
// come down through pinned staging buffers (asynchronous copies; pageable memory would make the
// driver stage and wait), and a frame waits exactly once, on one event after the download, which
// also brings the device error flags back in the same pinned buffer.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {
namespace {

// Grows `s` to `bytes`, after the copy that may still read the old buffer has finished.
void reserve(PinnedStaging& s, size_t bytes) {
  if (s.capacity >= bytes) return;
  CUDA_CHECK(cudaEventSynchronize(s.done));
  if (s.host) CUDA_CHECK(cudaFreeHost(s.host));
  s.host = nullptr;
  s.capacity = 0;
  const size_t capacity = (bytes + 65535) / 65536 * 65536;
  CUDA_CHECK(cudaMallocHost(&s.host, capacity));
  s.capacity = capacity;
}

constexpr size_t kErrorOffsetAlign = 64;

}  // namespace

void CudaBackend::upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) {
  L2D_ASSERT(bytes <= dst.bytes());
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(upload_.mutex);
  // The previous upload may still be reading the staging buffer (a frame whose output was not
  // downloaded, during the first T-1 streamed frames); normally this event is long complete.
  CUDA_CHECK(cudaEventSynchronize(upload_.done));
  reserve(upload_, bytes);
  std::memcpy(upload_.host, host, bytes);
  CUDA_COPY(cudaMemcpyAsync(dst.data(), upload_.host, bytes, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaEventRecord(upload_.done, stream_));
}

void CudaBackend::download_bytes(const Tensor& src, uint8_t* host, size_t bytes) {
  L2D_ASSERT(bytes <= src.bytes());
  std::lock_guard<std::mutex> lock(download_.mutex);
  const size_t err_at = (bytes + kErrorOffsetAlign - 1) / kErrorOffsetAlign * kErrorOffsetAlign;
  reserve(download_, err_at + sizeof(DeviceError));
  auto* err = reinterpret_cast<DeviceError*>(download_.host + err_at);
  if (bytes) CUDA_COPY(cudaMemcpyAsync(download_.host, src.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  CUDA_COPY(cudaMemcpyAsync(err, dev_error_, sizeof(DeviceError), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaEventRecord(download_.done, stream_));
  // The frame's one wait (also surfaces faults), timed as the push's device wait.
  CUDA_CHECK(timed_device_wait([&] { return cudaEventSynchronize(download_.done); }));
  const DeviceError e = *err;
  if (e.code != kErrNone) report_device_error(e);
  std::memcpy(host, download_.host, bytes);
}

template <typename T>
static __global__ void image_to_u8_kernel(const T* __restrict__ in, uint8_t* __restrict__ out, int64_t hw) {
  const int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over hw * 3 outputs (HWC)
  if (o >= hw * 3) return;
  const int64_t c = o % 3, px = o / 3;
  out[o] = uint8_t(nearbyintf(255.f * fminf(1.f, fmaxf(0.f, to_f(in[c * hw + px])))));
}

void CudaBackend::image_to_u8(const Tensor& x, Tensor& out) {
  L2D_ASSERT(x.ndim() == 4 && x.dim(0) == 1 && x.dim(1) == 3 && x.dtype() == float_dtype());
  const int64_t hw = x.dim(2) * x.dim(3);
  L2D_ASSERT(size_t(hw * 3) <= out.bytes());
  const unsigned blocks = unsigned(CEIL_DIV(hw * 3, int64_t(256)));
  auto* o = static_cast<uint8_t*>(out.data());
  if (fp16_) image_to_u8_kernel<<<blocks, 256, 0, stream_>>>(x.ptr<__half>(), o, hw);
  else image_to_u8_kernel<<<blocks, 256, 0, stream_>>>(x.ptr<float>(), o, hw);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
