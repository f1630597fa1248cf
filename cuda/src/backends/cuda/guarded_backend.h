// guarded_backend.h: the one door into the CUDA backend. Guarded<Impl> overrides every Backend
// entry point that can touch the device and, before forwarding to Impl:
//   1. makes Impl's device current on the CALLING thread (nonblocking FFI calls run on Deno worker
//      threads, whose current device is whatever the runtime defaulted to: device 0);
//   2. on the way out of the outermost op, in L2D_CUDA_SYNC=1 mode, synchronises and checks the
//      stream and the device error flags, so a fault is reported by the op that made it;
//   3. names the op, its tensors' shapes and dtypes in any device error it lets through.
// So no CUDA call can run on the wrong device even if a caller (api.cpp, stream.cpp) forgets.
// It also serialises the outermost ops of a context: two sessions of one context (two streams of
// one engine) may push from two threads, and the backend's host-side state (the dense router's
// per-shape maps and timings, the cuDNN handle, pinned staging, the error word) is not built for
// two ops at once. All of a context's work goes to one CUDA stream, so this costs the GPU nothing;
// what waits is another thread's enqueue while an op blocks (a frame's download). And while one
// thread captures the per-frame region, another thread's ops would land in the graph: they wait for
// the capture to end.
// Host C++ only, no CUDA headers: tests/test_device_guard.cpp instantiates it over a mock backend
// and a mock device API and checks every entry point on a CPU machine.
//
// Impl must provide: int device() const; const DeviceApi& device_api() const; bool sync_each_op()
// const; void check_after_op() (synchronise + report the first device error, throwing l2d::Error).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../core/backend.h"
#include "../../core/error.h"

namespace l2d::cuda {

// The two runtime calls the guard needs, behind function pointers (the seam the CPU test mocks).
// Both throw l2d::Error on failure.
struct DeviceApi {
  int (*current)();      // cudaGetDevice
  void (*make_current)(int device);  // cudaSetDevice
};

// Makes `device` current on this thread. It does NOT restore the previous device on exit: with the
// CUDA 12+ runtime, cudaSetDevice initialises that device's primary context, so "restoring" device
// 0 on a worker thread that never used it would create a context (and take memory) on a GPU this
// process may not even be meant to use. Every entry point sets its own device, so nothing relies on
// what a thread had current before.
class DeviceGuard {
 public:
  DeviceGuard(const DeviceApi& api, int device) {
    if (api.current() != device) api.make_current(device);
  }
};

// A tensor argument of an op, for error messages: "x f16[1,320,64,64]".
struct OpArg {
  const char* name;
  const Tensor* tensor;
};

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
  }
  return "?";
}

inline std::string describe_op(const char* op, std::initializer_list<OpArg> args) {
  std::ostringstream os;
  os << op << "(";
  bool first = true;
  for (const OpArg& a : args) {
    if (!a.tensor) continue;
    os << (first ? "" : ", ") << a.name << " ";
    first = false;
    if (!a.tensor->defined()) {
      os << "undefined";
      continue;
    }
    os << dtype_name(a.tensor->dtype()) << "[";
    for (int d = 0; d < a.tensor->ndim(); ++d) os << (d ? "," : "") << a.tensor->shape()[size_t(d)];
    os << "]";
  }
  os << ")";
  return os.str();
}

// Ops nest (from_host calls synchronize(), ops allocate through raw_alloc): only the outermost one
// syncs in debug mode and annotates errors.
inline int& op_depth() {
  thread_local int depth = 0;
  return depth;
}

template <class Impl>
class Guarded final : public Impl {
 public:
  template <typename... A>
  explicit Guarded(A&&... a) : Impl(std::forward<A>(a)...) {}

  void* raw_alloc(size_t bytes) override {
    const DeviceGuard g(this->device_api(), this->device());
    return Impl::raw_alloc(bytes);
  }
  // raw_free only returns the block to the host-side pool (no CUDA call), and it runs from Buffer
  // destructors, also during unwinding, where a throwing device check must not happen.

  Tensor from_host(const HostTensor& host) override {
    return op("from_host", {}, [&] { return Impl::from_host(host); });
  }
  HostTensor to_host(const Tensor& t) override {
    return op("to_host", {{"t", &t}}, [&] { return Impl::to_host(t); });
  }
  void synchronize() override {
    op("synchronize", {}, [&] { Impl::synchronize(); });
  }
  Tensor zeros(const Shape& shape, DType dtype) override {
    return op("zeros", {}, [&] { return Impl::zeros(shape, dtype); });
  }
  void fill(Tensor& t, float value) override {
    op("fill", {{"t", &t}}, [&] { Impl::fill(t, value); });
  }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) override {
    return op("conv2d", {{"x", &x}, {"w", &w}, {"bias", bias}}, [&] { return Impl::conv2d(x, w, bias, p); });
  }
  Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                      const Tensor* residual, const Conv2dParams& p) override {
    return op("conv2d_fused", {{"x", &x}, {"w", &w}, {"bias", bias}, {"image_bias", image_bias}, {"residual", residual}},
              [&] { return Impl::conv2d_fused(x, w, bias, image_bias, residual, p); });
  }
  Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) override {
    return op("conv_transpose2d", {{"x", &x}, {"w", &w}, {"bias", bias}},
              [&] { return Impl::conv_transpose2d(x, w, bias, stride); });
  }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) override {
    return op("linear", {{"x", &x}, {"w", &w}, {"bias", bias}}, [&] { return Impl::linear(x, w, bias); });
  }
  Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) override {
    return op("linear_add", {{"x", &x}, {"w", &w}, {"bias", bias}, {"residual", &residual}},
              [&] { return Impl::linear_add(x, w, bias, residual); });
  }
  Tensor linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) override {
    return op("linear_geglu", {{"x", &x}, {"w", &w}, {"bias", bias}}, [&] { return Impl::linear_geglu(x, w, bias); });
  }
  Tensor linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual, int64_t height,
                         int64_t width) override {
    return op("linear_to_image", {{"t", &t}, {"w", &w}, {"bias", bias}, {"residual", residual}},
              [&] { return Impl::linear_to_image(t, w, bias, residual, height, width); });
  }
  Tensor matmul(const Tensor& a, const Tensor& b) override {
    return op("matmul", {{"a", &a}, {"b", &b}}, [&] { return Impl::matmul(a, b); });
  }
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                    bool fuse_silu) override {
    return op("group_norm", {{"x", &x}, {"gamma", &gamma}, {"beta", &beta}},
              [&] { return Impl::group_norm(x, groups, gamma, beta, eps, fuse_silu); });
  }
  Tensor group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                           bool fuse_silu) override {
    return op("group_norm_tokens", {{"x", &x}, {"gamma", &gamma}, {"beta", &beta}},
              [&] { return Impl::group_norm_tokens(x, groups, gamma, beta, eps, fuse_silu); });
  }
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override {
    return op("layer_norm", {{"x", &x}, {"gamma", &gamma}, {"beta", &beta}},
              [&] { return Impl::layer_norm(x, gamma, beta, eps); });
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) override {
    return op("attention", {{"q", &q}, {"k", &k}, {"v", &v}}, [&] { return Impl::attention(q, k, v, heads, mask); });
  }
  Tensor stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache, const Tensor& qpe,
                                   const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                                   const Tensor& bias, int heads) override {
    return op("stream_temporal_attention",
              {{"q", &q}, {"k", &k}, {"v", &v}, {"cache", &cache}, {"qpe", &qpe}, {"pe_idx", &pe_idx},
               {"update_idx", &update_idx}, {"bias", &bias}},
              [&] {
                return Impl::stream_temporal_attention(q, k, v, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
              });
  }
  Tensor self_attention(const Tensor& qkv, int heads, AttnMask mask) override {
    return op("self_attention", {{"qkv", &qkv}}, [&] { return Impl::self_attention(qkv, heads, mask); });
  }
  Tensor stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe, const Tensor& kpe,
                                       const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                                       const Tensor& bias, int heads) override {
    return op("stream_temporal_attention_qkv",
              {{"qkv", &qkv}, {"cache", &cache}, {"qpe", &qpe}, {"pe_idx", &pe_idx}, {"update_idx", &update_idx},
               {"bias", &bias}},
              [&] {
                return Impl::stream_temporal_attention_qkv(qkv, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
              });
  }
  Tensor unary(const Tensor& x, Unary u, float a = 0.f, float b = 0.f) override {
    return op("unary", {{"x", &x}}, [&] { return Impl::unary(x, u, a, b); });
  }
  Tensor binary(const Tensor& a, const Tensor& b, Binary bop) override {
    return op("binary", {{"a", &a}, {"b", &b}}, [&] { return Impl::binary(a, b, bop); });
  }
  Tensor geglu(const Tensor& x) override {
    return op("geglu", {{"x", &x}}, [&] { return Impl::geglu(x); });
  }
  Tensor permute(const Tensor& x, const std::vector<int>& perm) override {
    return op("permute", {{"x", &x}}, [&] { return Impl::permute(x, perm); });
  }
  Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step = 1) override {
    return op("slice", {{"x", &x}}, [&] { return Impl::slice(x, dim, start, end, step); });
  }
  void write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) override {
    op("write_slice", {{"dst", &dst}, {"src", &src}}, [&] { Impl::write_slice(dst, src, starts); });
  }
  Tensor upsample_nearest(const Tensor& x, int out_h, int out_w) override {
    return op("upsample_nearest", {{"x", &x}}, [&] { return Impl::upsample_nearest(x, out_h, out_w); });
  }
  Tensor resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) override {
    return op("resize_bilinear", {{"x", &x}}, [&] { return Impl::resize_bilinear(x, out_h, out_w, align_corners); });
  }
  Tensor max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) override {
    return op("max_pool2d", {{"x", &x}}, [&] { return Impl::max_pool2d(x, kernel, p); });
  }
  Tensor embedding(const Tensor& ids, const Tensor& table) override {
    return op("embedding", {{"ids", &ids}, {"table", &table}}, [&] { return Impl::embedding(ids, table); });
  }
  Tensor minmax_normalize(const Tensor& x) override {
    return op("minmax_normalize", {{"x", &x}}, [&] { return Impl::minmax_normalize(x); });
  }
  Tensor random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) override {
    return op("random_normal", {}, [&] { return Impl::random_normal(shape, seed, stream, draw); });
  }
  Tensor random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream, const Tensor& counter,
                               int32_t offset) override {
    return op("random_normal_counter", {{"counter", &counter}},
              [&] { return Impl::random_normal_counter(shape, seed, stream, counter, offset); });
  }
  void counter_add(Tensor& counter, int32_t by) override {
    op("counter_add", {{"counter", &counter}}, [&] { Impl::counter_add(counter, by); });
  }
  void kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) override {
    op("kv_advance", {{"bias", &bias}, {"pe_idx", &pe_idx}, {"update_idx", &update_idx}},
       [&] { Impl::kv_advance(bias, pe_idx, update_idx, sink); });
  }
  Tensor image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                           int64_t out_w) override {
    return op("image_fit_from_u8", {}, [&] { return Impl::image_fit_from_u8(host, h, w, channels, out_h, out_w); });
  }
  Tensor image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) override {
    return op("image_from_u8", {}, [&] { return Impl::image_from_u8(host, n, h, w, channels); });
  }
  void image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) override {
    op("image_to_host", {{"x", &x}}, [&] { Impl::image_to_host(x, out_f32, out_u8); });
  }
  void upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) override {
    op("upload_bytes", {{"dst", &dst}}, [&] { Impl::upload_bytes(dst, host, bytes); });
  }
  Tensor image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                              int64_t out_w) override {
    return op("image_fit_from_bytes", {{"frame", &frame}},
              [&] { return Impl::image_fit_from_bytes(frame, h, w, channels, out_h, out_w); });
  }
  void image_to_u8(const Tensor& x, Tensor& out) override {
    op("image_to_u8", {{"x", &x}, {"out", &out}}, [&] { Impl::image_to_u8(x, out); });
  }
  void download_bytes(const Tensor& src, uint8_t* host, size_t bytes) override {
    op("download_bytes", {{"src", &src}}, [&] { Impl::download_bytes(src, host, bytes); });
  }
  double image_cosine_similarity(const Tensor& a, const Tensor& b) override {
    return op("image_cosine_similarity", {{"a", &a}, {"b", &b}}, [&] { return Impl::image_cosine_similarity(a, b); });
  }
  // The dense router's counters and timing events change under every op: read them between ops.
  std::string kernel_info_json() override {
    return op("kernel_info_json", {}, [&] { return Impl::kernel_info_json(); });
  }
  int64_t capture(const std::function<void()>& region, std::string* why) override {
    const std::unique_lock<std::shared_mutex> exclusive(exclusive_);  // other threads' ops wait
    capture_owner_.store(std::this_thread::get_id());
    struct Owner {
      std::atomic<std::thread::id>& owner;
      ~Owner() { owner.store(std::thread::id()); }
    } clear{capture_owner_};
    return op("capture", {}, [&] { return Impl::capture(region, why); });
  }
  void replay(int64_t handle) override {
    op("replay", {}, [&] { Impl::replay(handle); });
  }
  // Never throws (runs from destructors): a device that cannot be made current is skipped, the
  // graph's host-side bookkeeping is still released.
  void release_capture(int64_t handle) noexcept override {
    if (!handle) return;
    try {
      const DeviceGuard g(this->device_api(), this->device());
    } catch (...) {
    }
    // Releasing waits for the stream, which would break another thread's capture on it.
    std::unique_lock<std::shared_mutex> exclusive;
    if (op_depth() == 0 && capture_owner_.load() != std::this_thread::get_id())
      exclusive = std::unique_lock(exclusive_);
    Impl::release_capture(handle);
  }

 private:
  // Runs f on this backend's device. Device faults (L2D_ERR_BACKEND / OUT_OF_MEMORY / INTERNAL)
  // leaving the outermost op get the op's description (name, tensor shapes and dtypes) appended.
  template <class F>
  auto op(const char* name, std::initializer_list<OpArg> args, F&& f) -> decltype(f()) {
    const DeviceGuard g(this->device_api(), this->device());
    const bool outer = op_depth() == 0;
    // One outermost op at a time per context; the capturing thread already holds the lock.
    std::unique_lock<std::shared_mutex> exclusive;
    if (outer && capture_owner_.load() != std::this_thread::get_id()) exclusive = std::unique_lock(exclusive_);
    ++op_depth();
    struct Depth {
      ~Depth() { --op_depth(); }
    } depth;
    try {
      if constexpr (std::is_void_v<decltype(f())>) {
        f();
        if (outer && this->sync_each_op()) this->check_after_op();
      } else {
        auto r = f();
        if (outer && this->sync_each_op()) this->check_after_op();
        return r;
      }
    } catch (const Error& e) {
      // Data errors (INVALID_ARGUMENT: a bad token id, a bad frame) keep the message the user sees,
      // except in the debug mode, whose point is naming the op.
      if (!outer || (e.status() == L2D_ERR_INVALID_ARGUMENT && !this->sync_each_op())) throw;
      throw Error(e.status(), std::string(e.what()) + " [CUDA op " + describe_op(name, args) +
                                  (this->sync_each_op() ? "; L2D_CUDA_SYNC=1: this op made the fault]"
                                                        : "; asynchronous: an earlier op may have made it, rerun "
                                                          "with L2D_CUDA_SYNC=1 to attribute it]"));
    }
  }

  std::shared_mutex exclusive_;  // held by the running outermost op, or by a capture
  std::atomic<std::thread::id> capture_owner_{};
};

}  // namespace l2d::cuda
