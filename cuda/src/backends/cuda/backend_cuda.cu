// Memory, transfers and device selection of the CUDA backend. Ops live in one file per op family.
#include <algorithm>
#include <cstring>

#include "../../core/philox.h"
#include "../backends.h"
#include "backend_cuda.h"
#include "common.cuh"

namespace l2d {

bool cuda_backend_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(const Json& options) {
  if (!cuda_backend_available()) fail(L2D_ERR_UNSUPPORTED, "no CUDA device is available");
  const std::string precision = options.get_str("precision", "fp16");
  L2D_REQUIRE(precision == "fp16" || precision == "fp32", "precision must be \"fp16\" or \"fp32\", got \"", precision, "\"");
  return std::make_unique<cuda::CudaBackend>(int(options.get_int("device", 0)), precision == "fp16");
}

namespace cuda {

CudaBackend::CudaBackend(int device, bool fp16) : device_(device), fp16_(fp16) {
  CUDA_CHECK(cudaSetDevice(device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaMalloc(&dev_error_, sizeof(DeviceError)));
  CUDA_CHECK(cudaMallocHost(&host_error_, sizeof(DeviceError)));
  CUDA_CHECK(cudaMemsetAsync(dev_error_, 0, sizeof(DeviceError), stream_));
  *host_error_ = DeviceError{};
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  fit_tables_.clear();  // their blocks return to the pool, freed below
  for (auto& [size, ptr] : free_blocks_) cudaFree(ptr);
  if (dev_error_) cudaFree(dev_error_);
  if (host_error_) cudaFreeHost(host_error_);
  cudaStreamDestroy(stream_);
}

// Sizes round up to 256 B below 1 MB and to 2 MB-granular buckets above, so steady-state frames
// reuse blocks exactly.
static size_t bucket(size_t bytes) {
  if (bytes <= (1u << 20)) return (bytes + 255) / 256 * 256;
  return (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
}

void* CudaBackend::raw_alloc(size_t bytes) {
  const size_t size = bucket(bytes);
  std::lock_guard<std::mutex> lock(pool_mutex_);
  void* ptr = nullptr;
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end()) {
    ptr = it->second;
    free_blocks_.erase(it);
  } else {
    CUDA_CHECK(cudaSetDevice(device_));
    if (cudaMalloc(&ptr, size) != cudaSuccess) {
      cudaGetLastError();
      // Give cached blocks back and retry once before reporting out-of-memory.
      cudaStreamSynchronize(stream_);
      for (auto& [s, p] : free_blocks_) cudaFree(p);
      reserved_ = in_use_;
      free_blocks_.clear();
      CUDA_CHECK(cudaMalloc(&ptr, size));
    }
    reserved_ += size;
  }
  in_use_ += size;
  peak_ = std::max(peak_, in_use_);
  return ptr;
}

void CudaBackend::raw_free(void* ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  const size_t size = bucket(bytes);
  in_use_ -= size;
  free_blocks_.emplace(size, ptr);  // stream-ordered reuse: later work on stream_ sees it free
}

// Waits for the stream and reports the first data error a kernel recorded since the last call
// (an out-of-range token id or KV-cache index: the kernel clamped it and went on), so the error
// surfaces at the next synchronize()/to_host()/from_host() after the op that met it.
void CudaBackend::synchronize() {
  CUDA_CHECK(cudaMemcpyAsync(host_error_, dev_error_, sizeof(DeviceError), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const DeviceError e = *host_error_;
  if (e.code == kErrNone) return;
  host_error_->code = kErrNone;
  CUDA_CHECK(cudaMemsetAsync(dev_error_, 0, sizeof(DeviceError), stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  switch (e.code) {
    case kErrEmbeddingId:
      fail(L2D_ERR_INVALID_ARGUMENT, "token id ", e.value, " is outside the vocabulary (", e.limit, ")");
    case kErrStreamUpdateIdx:
      fail(L2D_ERR_INVALID_ARGUMENT, "update_idx = ", e.value, " is outside the window (", e.limit, " slots)");
    case kErrStreamPeIdx:
      fail(L2D_ERR_INVALID_ARGUMENT, "pe_idx = ", e.value, " is outside 0..", e.limit - 1);
    default:
      fail(L2D_ERR_BACKEND, "unknown device error code ", e.code);
  }
}

Tensor CudaBackend::from_host(const HostTensor& host) {
  const bool integer = host.dtype == L2D_I64 || host.dtype == L2D_I32 || host.dtype == L2D_U8 || host.dtype == L2D_BOOL;
  if (integer) {
    const std::vector<int64_t> v = host.to_i64();
    std::vector<int32_t> v32(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      L2D_REQUIRE(v[i] >= INT32_MIN && v[i] <= INT32_MAX, "integer value ", v[i], " does not fit int32");
      v32[i] = int32_t(v[i]);
    }
    Tensor t(this, DType::I32, host.shape);
    CUDA_CHECK(cudaMemcpyAsync(t.data(), v32.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();  // v32 dies here; off the hot path
    return t;
  }
  Tensor t(this, float_dtype(), host.shape);
  if ((fp16_ && host.dtype == L2D_F16) || (!fp16_ && host.dtype == L2D_F32)) {
    // Already in the storage type (fp16 engines on the fp16 path): one copy, no conversion.
    CUDA_CHECK(cudaMemcpyAsync(t.data(), host.bytes.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
    return t;
  }
  const std::vector<float> f = host.to_f32();
  if (fp16_) {
    std::vector<uint16_t> h(f.size());
    for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_half(f[i]);
    CUDA_CHECK(cudaMemcpyAsync(t.data(), h.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
  } else {
    CUDA_CHECK(cudaMemcpyAsync(t.data(), f.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
  }
  return t;
}

HostTensor CudaBackend::to_host(const Tensor& t) {
  HostTensor h;
  h.shape = t.shape();
  if (t.dtype() == DType::F16) {
    std::vector<uint16_t> raw(size_t(t.numel()));
    CUDA_CHECK(cudaMemcpyAsync(raw.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
    std::vector<float> f(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) f[i] = half_to_float(raw[i]);
    return HostTensor::from_f32(t.shape(), f.data());
  }
  h.dtype = t.dtype() == DType::I32 ? L2D_I32 : L2D_F32;
  h.bytes.resize(t.bytes());
  CUDA_CHECK(cudaMemcpyAsync(h.bytes.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  return h;
}

Tensor CudaBackend::zeros(const Shape& shape, DType dtype) {
  Tensor t(this, dtype, shape);
  CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.bytes(), stream_));
  return t;
}

static __global__ void philox_normal_kernel(float* out, int64_t n, uint32_t seed, uint32_t stream, uint32_t draw) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = philox::normal_at(uint64_t(i), seed, stream, draw);
}

void philox_normal_device(float* host_out, int64_t n, uint32_t seed, uint32_t stream, uint32_t draw) {
  float* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, size_t(n) * 4));
  philox_normal_kernel<<<unsigned(CEIL_DIV(n, 256)), 256>>>(d, n, seed, stream, draw);
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t copy = cudaMemcpy(host_out, d, size_t(n) * 4, cudaMemcpyDeviceToHost);
  cudaFree(d);
  CUDA_CHECK(launch);
  CUDA_CHECK(copy);
}

}  // namespace cuda
}  // namespace l2d
