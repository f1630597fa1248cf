// backend_cuda.h: the CUDA backend. Float tensors are stored as T = __half (fast path, fp32
// accumulation inside kernels) or float (verification mode); every op is a kernel templated on T.
// Allocations come from a size-bucketed caching pool, so the per-frame path does no cudaMalloc
// and the same sequence of ops gets the same addresses (what CUDA-graph replay needs).
// CudaBackend holds the ops; it is only ever created as Guarded<CudaBackend> (guarded_backend.h),
// which makes the backend's device current on the calling thread before every entry point.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <atomic>
#include <unordered_map>
#include <vector>

#include "../../core/backend.h"
#include "fusions.h"
#include "graph.h"
#include "../../core/device_tally.h"
#include "guarded_backend.h"

// Launch accounting (the bench's launches per frame; core/device_tally.h): CUDA_CHECK_LAUNCH counts
// every <<<>>> launch, the dense router every vendor call, CUDA_COPY every cudaMemcpy*/cudaMemset*
// (counted as copies, apart from the launches). CUDA-graph code reports its own work:
//   l2d::tally_graph_launch(kernel_nodes, copy_nodes);  // after each cudaGraphLaunch (nodes: at instantiation)
//   { l2d::CaptureTallyScope scope; ...capture... }  // launches recorded into a graph, not run

namespace l2d::cuda {

struct DeviceError;  // common.cuh
class DenseRouter;  // dense_router.h
class StageEvents;  // stage_events.h

// Which attention kernels a context runs (ops_attention.cu): the simple ones (verified, any
// shape) or the fast ones (tensor-core fused attention, vectorised temporal attention; problems
// they do not fit fall back). L2D_ATTENTION=simple|tc, read once per context; anything else is
// L2D_ERR_INVALID_ARGUMENT.
enum class AttentionKernel { Simple, Fast };
AttentionKernel attention_kernel_from_env();

// Which norm kernels a context runs (ops_misc.cu): the simple ones (kernels/norm.cu, verified) or
// the fast ones (kernels/norm_fast.cu: chunked GroupNorm, register-resident LayerNorm; a layer norm
// they do not fit falls back). L2D_NORM=simple|fast, read once per context; anything else is
// L2D_ERR_INVALID_ARGUMENT.
enum class NormKernel { Simple, Fast };
NormKernel norm_kernel_from_env();

class CudaBackend : public Backend {
 protected:
  // Protected: make_cuda_backend creates Guarded<CudaBackend>, never a bare one.
  CudaBackend(int device, bool fp16);

 public:
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  DType float_dtype() const override { return fp16_ ? DType::F16 : DType::F32; }
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* ptr, size_t bytes) override;
  size_t bytes_in_use() const override { return in_use_; }
  size_t peak_bytes() const override { return peak_; }
  size_t graph_reserved_bytes() const override { return graph_idle_; }
  std::string kernel_info_json() override;

  Tensor from_host(const HostTensor& host) override;
  HostTensor to_host(const Tensor& t) override;
  void synchronize() override;
  Tensor zeros(const Shape& shape, DType dtype) override;
  void fill(Tensor& t, float value) override;

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) override;
  Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                      const Tensor* residual, const Conv2dParams& p) override;
  Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) override;
  Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) override;
  Tensor linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) override;  // ops_dense.cu
  Tensor matmul(const Tensor& a, const Tensor& b) override;
  // fusions_.layout: the norm kernels write tokens directly (ops_misc.cu); else the default.
  Tensor group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                           bool fuse_silu) override;
  // fusions_.layout: one routed GEMM per image with w as A, writing NCHW (ops_layout.cu); else the default.
  Tensor linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual, int64_t height,
                         int64_t width) override;
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                    bool fuse_silu) override;
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) override;
  Tensor stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                   const Tensor& qpe, const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                                   const Tensor& update_idx, const Tensor& bias, int heads) override;
  Tensor self_attention(const Tensor& qkv, int heads, AttnMask mask) override;
  Tensor stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe, const Tensor& kpe,
                                       const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                                       const Tensor& bias, int heads) override;
  Tensor unary(const Tensor& x, Unary op, float a, float b) override;
  Tensor binary(const Tensor& a, const Tensor& b, Binary op) override;
  Tensor geglu(const Tensor& x) override;
  Tensor permute(const Tensor& x, const std::vector<int>& perm) override;
  Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step) override;
  void write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) override;
  Tensor upsample_nearest(const Tensor& x, int out_h, int out_w) override;
  Tensor resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) override;
  Tensor max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) override;
  Tensor embedding(const Tensor& ids, const Tensor& table) override;
  Tensor minmax_normalize(const Tensor& x) override;
  Tensor random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) override;
  Tensor random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream, const Tensor& counter,
                               int32_t offset) override;
  void counter_add(Tensor& counter, int32_t by) override;
  void kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) override;
  Tensor image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) override;
  Tensor image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                           int64_t out_w) override;
  bool fits_frames_on_device() const override { return true; }
  void image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) override;
  // The per-frame path (graph_io.cu): pinned staging in and out, one event per frame.
  void upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) override;
  Tensor image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                              int64_t out_w) override;
  void image_to_u8(const Tensor& x, Tensor& out) override;
  void download_bytes(const Tensor& src, uint8_t* host, size_t bytes) override;
  // The similar-image filter's measure (ops_similarity.cu): fp32 block reduction, one small wait.
  double image_cosine_similarity(const Tensor& a, const Tensor& b) override;
  // CUDA graphs of the per-frame region (graph.cu).
  int64_t capture(const std::function<void()>& region, std::string* why) override;
  void replay(int64_t handle) override;
  void release_capture(int64_t handle) noexcept override;
  // Stage profiling with CUDA events (stage_events.cu; off by default, none during graph capture).
  void set_stage_profiling(bool on) override;
  uint64_t stage_begin() noexcept override;
  void stage_end(const char* stage, uint64_t token) noexcept override;
  std::string stage_times_json() override;

  cudaStream_t stream() const { return stream_; }
  bool fp16() const { return fp16_; }
  // What Guarded<> needs: the device, the runtime calls to make it current, and the debug mode
  // (L2D_CUDA_SYNC=1, read once at construction: synchronise and check after every op).
  int device() const { return device_; }
  const DeviceApi& device_api() const;
  bool sync_each_op() const { return sync_each_op_; }
  // Launch errors, stream faults and device error flags, now (throws l2d::Error).
  void check_after_op();
  // Where kernels record data errors (clamped indices); synchronize() turns one into an
  // L2D_ERR_INVALID_ARGUMENT throw.
  DeviceError* device_error() const { return dev_error_; }

 private:
  // linear (residual null) and linear_add (ops_dense.cu).
  Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual);
  // conv2d (residual null, bias [O]) and conv2d_fused (bias [O], [1, O] or [N, O]: one row per image)
  // (ops_conv_fused.cu).
  Tensor conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual,
                     const Conv2dParams& p);

  int device_;
  bool fp16_;
  bool sync_each_op_ = false;
  AttentionKernel attention_kernel_ = attention_kernel_from_env();
  NormKernel norm_kernel_ = norm_kernel_from_env();
  const Fusions fusions_ = fusions_from_env();  // L2D_FUSE (fusions.h)
  cudaStream_t stream_ = nullptr;
  std::mutex pool_mutex_;
  std::multimap<size_t, void*> free_blocks_;  // rounded size -> block
  // in_use_: blocks tensors hold; graph_idle_: blocks in the graphs' free lists (a replay writes
  // them, nothing else may take them); peak_: the high-water mark of the two together (what work
  // needs at once); reserved_: everything cudaMalloc'ed (with the shared pool's free blocks).
  size_t in_use_ = 0, peak_ = 0, reserved_ = 0;
  std::atomic<size_t> graph_idle_{0};  // written under pool_mutex_, read by stats without it
  DeviceError* dev_error_ = nullptr;   // device word written by kernels
  DeviceError* host_error_ = nullptr;  // pinned copy read after each synchronize()
  std::unique_ptr<DenseRouter> dense_;  // conv / GEMM path choice (L2D_KERNELS), vendor libraries
  // Frame-fitting tables per geometry {in_w, in_h, out_w, out_h}: x_start, x_w, y_start, y_w
  // (ops_frame.cu).
  std::map<std::vector<int64_t>, std::vector<Tensor>> fit_tables_;
  std::mutex fit_mutex_;  // fit_tables_ (two sessions of a context may fit frames at once)
  // Float NCHW image from uint8 [n, h, w, channels] bytes already on the device.
  Tensor image_from_bytes(const Tensor& bytes, int64_t n, int64_t h, int64_t w, int channels);
  // Throws the data error a kernel flagged (and clears the flag).
  [[noreturn]] void report_device_error(const DeviceError& e);

  // ---- capture (graph.cu); the pool fields below are guarded by pool_mutex_ ----
  const bool use_graphs_ = graphs_from_env();
  std::map<int64_t, std::unique_ptr<CapturedGraph>> graphs_;
  CapturedGraph* capturing_ = nullptr;  // the capture in progress, on capture_thread_
  std::thread::id capture_thread_;
  std::unordered_map<void*, CapturedGraph*> graph_blocks_;  // block -> the graph owning it
  int64_t next_graph_ = 1;
  // The capture this thread is running, if any (pool_mutex_ held).
  CapturedGraph* capture_here() const {
    return capturing_ && std::this_thread::get_id() == capture_thread_ ? capturing_ : nullptr;
  }
  // Keeps tensors made before the capture alive while the graph that reads them exists.
  void keep_for_capture(const std::vector<Tensor>& tensors);
  // Destroys a graph and gives its idle blocks back to the shared pool (waits for the stream).
  void discard_graph(std::unique_ptr<CapturedGraph> g) noexcept;

  // ---- the per-frame copies (graph_io.cu) ----
  PinnedStaging upload_, download_;
  std::unique_ptr<StageEvents> stage_events_;  // made on the first set_stage_profiling(true)
};

// Philox values computed on the device (checks the shared philox.h in device code).
void philox_normal_device(float* host_out, int64_t n, uint32_t seed, uint32_t stream, uint32_t draw);

}  // namespace l2d::cuda
