// Memory, transfers, device selection and start-up diagnosis of the CUDA backend. Ops live in one
// file per op family.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../../core/config.h"
#include "../../core/philox.h"
#include "../backends.h"
#include "backend_cuda.h"
#include "common.cuh"
#include "dense_router.h"
#include "stage_events.h"

namespace l2d {
namespace {

// "13.0" from 13000 (the encoding of cudaDriverGetVersion / cudaRuntimeGetVersion).
std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

// One line saying why CUDA cannot run on `device`, with the driver and runtime versions and what to
// do; empty when it can. The runtime is linked statically, so the usual failures are the driver's:
// none installed, one older than the runtime, or no device visible to it.
std::string cuda_unavailable_reason(int device) {
  int count = 0, driver = 0, runtime = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  cudaGetLastError();  // clear the error for later calls on this thread
  cudaDriverGetVersion(&driver);  // 0 when no driver (libcuda.so.1) could be loaded
  cudaRuntimeGetVersion(&runtime);
  if (e == cudaSuccess && count > 0 && device >= 0 && device < count) return "";
  const std::string versions = "(driver: " + (driver ? "CUDA " + cuda_version(driver) : std::string("none")) +
                               ", runtime: CUDA " + cuda_version(runtime) + ")";
  const std::string needs = runtime / 1000 == 13 ? "R580 or newer (the CUDA 13 runtime needs it)"
                                                 : "one that supports CUDA " + cuda_version(runtime);
  if (e == cudaSuccess && count > 0)
    return "CUDA device " + std::to_string(device) + " does not exist: " + std::to_string(count) + " visible " +
           versions + "; pick a device in 0.." + std::to_string(count - 1) + " or check CUDA_VISIBLE_DEVICES";
  if (driver == 0)
    return "no NVIDIA driver found: libcuda.so.1 could not be loaded " + versions + "; install the NVIDIA driver " +
           needs + ", or use the CPU (device \"cpu\")";
  if (e == cudaErrorInsufficientDriver || driver < runtime)
    return "the NVIDIA driver is too old " + versions + "; update the driver to " + needs + ", or use the CPU";
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
    return "no CUDA device is visible " + versions +
           "; check nvidia-smi, CUDA_VISIBLE_DEVICES and the container's GPU access, or use the CPU";
  return std::string("CUDA cannot start: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + " " + versions +
         "; check nvidia-smi and the driver installation, or use the CPU";
}

}  // namespace

bool cuda_backend_available() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  return ok;
}

std::unique_ptr<Backend> make_cuda_backend(const Json& options) {
  const ConfigReader o(options, "cuda context options", L2D_ERR_INVALID_ARGUMENT);
  const std::string precision = o.string("precision", "fp16");
  L2D_REQUIRE(precision == "fp16" || precision == "fp32", "precision must be \"fp16\" or \"fp32\", got \"", precision, "\"");
  const int device = int(o.integer("device", 0, 0, 1023));
  const std::string why = cuda_unavailable_reason(device);
  if (!why.empty()) fail(L2D_ERR_UNSUPPORTED, "CUDA is unavailable: ", why);
  try {
    return std::make_unique<cuda::Guarded<cuda::CudaBackend>>(device, precision == "fp16");
  } catch (const Error& e) {
    // The device exists but would not start (exclusive mode, taken, out of memory, ECC...).
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    fail(e.status(), "CUDA could not start on device ", device, " (driver: CUDA ", cuda_version(driver),
         ", runtime: CUDA ", cuda_version(runtime), "): ", e.what());
  }
}

namespace cuda {
namespace {

int runtime_current_device() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return device;
}
void runtime_make_current(int device) { CUDA_CHECK(cudaSetDevice(device)); }
const DeviceApi kRuntimeDeviceApi{runtime_current_device, runtime_make_current};

}  // namespace

const DeviceApi& CudaBackend::device_api() const { return kRuntimeDeviceApi; }

int device_sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int device = 0, n = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return 100;
  if (device < kMaxDevices && (n = cache[device].load(std::memory_order_relaxed)) > 0) return n;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 100;
  if (device < kMaxDevices) cache[device].store(n, std::memory_order_relaxed);
  return n;
}

CudaBackend::CudaBackend(int device, bool fp16) : device_(device), fp16_(fp16) {
  const char* sync = std::getenv("L2D_CUDA_SYNC");
  sync_each_op_ = sync && *sync && std::strcmp(sync, "0") != 0;
  CUDA_CHECK(cudaSetDevice(device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaMalloc(&dev_error_, sizeof(DeviceError)));
  CUDA_CHECK(cudaMallocHost(&host_error_, sizeof(DeviceError)));
  CUDA_COPY(cudaMemsetAsync(dev_error_, 0, sizeof(DeviceError), stream_));
  *host_error_ = DeviceError{};
  CUDA_CHECK(cudaEventCreateWithFlags(&upload_.done, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&download_.done, cudaEventDisableTiming));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  dense_ = std::make_unique<DenseRouter>(fp16_);
}

// The dense router's JSON with the context's other kernel switches in front (L2D_FUSE,
// L2D_ATTENTION, L2D_NORM), so a bench record says which kernels produced its numbers.
std::string CudaBackend::kernel_info_json() {
  const std::string dense = dense_->info_json();  // "{...}"
  std::string head = std::string("{\"fusions\":\"") + fusions_.describe() + "\",\"attention\":\"" +
                     (attention_kernel_ == AttentionKernel::Fast ? "tc" : "simple") + "\",\"norm\":\"" +
                     (norm_kernel_ == NormKernel::Fast ? "fast" : "simple") + "\"";
  return dense.size() > 2 ? head + "," + dense.substr(1) : head + "}";
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  while (!graphs_.empty()) release_capture(graphs_.begin()->first);  // their blocks go to the pool
  fit_tables_.clear();  // their blocks return to the pool, freed below
  for (auto& [size, ptr] : free_blocks_) cudaFree(ptr);
  if (dev_error_) cudaFree(dev_error_);
  if (host_error_) cudaFreeHost(host_error_);
  for (PinnedStaging* s : {&upload_, &download_}) {
    if (s->host) cudaFreeHost(s->host);
    if (s->done) cudaEventDestroy(s->done);
  }
  cudaStreamDestroy(stream_);
}

// L2D_CUDA_SYNC=1: a launch error (bad configuration), a fault of the kernels just run (illegal
// address, trap) or a data error they flagged, raised by the op that caused it.
void CudaBackend::check_after_op() {
  CUDA_CHECK(cudaGetLastError());
  CudaBackend::synchronize();
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
  CapturedGraph* const graph = capture_here();
  void* ptr = nullptr;
  if (graph) {  // a block this capture already owns and freed: reuse it inside the capture
    auto it = graph->free.find(size);
    if (it != graph->free.end()) {
      ptr = it->second;
      graph->free.erase(it);
      graph_idle_ -= size;
      in_use_ += size;  // (in_use_ + graph_idle_ unchanged: no new peak)
      return ptr;
    }
  }
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end()) {
    ptr = it->second;
    free_blocks_.erase(it);
  } else if (graph) {
    // cudaMalloc is not stream-ordered, so thread-local capture mode forbids it; the block is the
    // graph's from now on, which is exactly what a replay needs, so allow it for this one call.
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    const cudaError_t e = cudaMalloc(&ptr, size);
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (e != cudaSuccess) {
      cudaGetLastError();
      // No freeing of cached blocks here (that waits for the stream): the capture fails and the
      // eager rerun of the region retries with the usual path.
      fail(L2D_ERR_OUT_OF_MEMORY, "cudaMalloc(", size, ") failed while capturing a graph: ", cudaGetErrorString(e));
    }
    reserved_ += size;
  } else {
    // (the guard made device_ current: Guarded<>::raw_alloc)
    if (cudaMalloc(&ptr, size) != cudaSuccess) {
      cudaGetLastError();
      // Another thread capturing on stream_ (another session of this context): the sync below
      // would invalidate its capture, so report out-of-memory instead.
      if (capturing_) fail(L2D_ERR_OUT_OF_MEMORY, "cudaMalloc(", size, ") failed while a graph is being captured");
      // Give cached blocks back and retry once before reporting out-of-memory.
      cudaStreamSynchronize(stream_);
      for (auto& [s, p] : free_blocks_) cudaFree(p);
      reserved_ = in_use_;
      for (const auto& [h, g] : graphs_)  // the graphs' idle blocks stay reserved for them
        for (const auto& [s, p] : g->free) reserved_ += s;
      free_blocks_.clear();
      CUDA_CHECK(cudaMalloc(&ptr, size));
    }
    reserved_ += size;
  }
  if (graph) {
    graph->blocks.emplace_back(ptr, size);
    graph_blocks_.emplace(ptr, graph);
  }
  in_use_ += size;
  peak_ = std::max(peak_, in_use_ + graph_idle_);
  return ptr;
}

void CudaBackend::raw_free(void* ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  const size_t size = bucket(bytes);
  in_use_ -= size;
  auto owned = graph_blocks_.find(ptr);
  if (owned != graph_blocks_.end()) {  // a graph's block stays the graph's
    owned->second->free.emplace(size, ptr);
    graph_idle_ += size;
    return;
  }
  if (CapturedGraph* graph = capture_here()) {
    // Made before the capture, freed inside it: nodes captured before this point may read it on
    // every replay, so it belongs to the graph now.
    graph->blocks.emplace_back(ptr, size);
    graph_blocks_.emplace(ptr, graph);
    graph->free.emplace(size, ptr);
    graph_idle_ += size;
    return;
  }
  free_blocks_.emplace(size, ptr);  // stream-ordered reuse: later work on stream_ sees it free
}

// Waits for the stream and reports the first data error a kernel recorded since the last call
// (an out-of-range token id or KV-cache index: the kernel clamped it and went on), so the error
// surfaces at the next synchronize()/to_host()/from_host() after the op that met it.
void CudaBackend::synchronize() {
  CUDA_COPY(cudaMemcpyAsync(host_error_, dev_error_, sizeof(DeviceError), cudaMemcpyDeviceToHost, stream_));
  CUDA_STREAM_WAIT(stream_);
  const DeviceError e = *host_error_;
  if (e.code == kErrNone) return;
  host_error_->code = kErrNone;
  report_device_error(e);
}

void CudaBackend::report_device_error(const DeviceError& e) {
  CUDA_COPY(cudaMemsetAsync(dev_error_, 0, sizeof(DeviceError), stream_));
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
    CUDA_COPY(cudaMemcpyAsync(t.data(), v32.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();  // v32 dies here; off the hot path
    return t;
  }
  Tensor t(this, float_dtype(), host.shape);
  if ((fp16_ && host.dtype == L2D_F16) || (!fp16_ && host.dtype == L2D_F32)) {
    // Already in the storage type (fp16 engines on the fp16 path): one copy, no conversion.
    CUDA_COPY(cudaMemcpyAsync(t.data(), host.bytes.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
    return t;
  }
  const std::vector<float> f = host.to_f32();
  if (fp16_) {
    std::vector<uint16_t> h(f.size());
    for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_half(f[i]);
    CUDA_COPY(cudaMemcpyAsync(t.data(), h.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
  } else {
    CUDA_COPY(cudaMemcpyAsync(t.data(), f.data(), t.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();
  }
  return t;
}

HostTensor CudaBackend::to_host(const Tensor& t) {
  HostTensor h;
  h.shape = t.shape();
  if (t.dtype() == DType::F16) {
    std::vector<uint16_t> raw(size_t(t.numel()));
    CUDA_COPY(cudaMemcpyAsync(raw.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
    std::vector<float> f(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) f[i] = half_to_float(raw[i]);
    return HostTensor::from_f32(t.shape(), f.data());
  }
  h.dtype = t.dtype() == DType::I32 ? L2D_I32 : L2D_F32;
  h.bytes.resize(t.bytes());
  CUDA_COPY(cudaMemcpyAsync(h.bytes.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  return h;
}

Tensor CudaBackend::zeros(const Shape& shape, DType dtype) {
  Tensor t(this, dtype, shape);
  CUDA_COPY(cudaMemsetAsync(t.data(), 0, t.bytes(), stream_));
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
