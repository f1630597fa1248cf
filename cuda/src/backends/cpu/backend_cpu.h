// backend_cpu.h: the CPU reference backend. fp32 storage and math, obviously-correct loops except
// where speed matters for CI (GEMM, im2col convolution, blocked attention), multithreaded with a
// small fork-join pool. It is the oracle the CUDA backend is tested against.
#pragma once

#include <atomic>
#include <map>
#include <mutex>

#include "../../core/backend.h"
#include "thread_pool.h"

namespace l2d::cpu {

// The CPU op running on this thread (nullptr: none), so a capture-audit message can say which op
// made the allocation or passed the host argument that differs from the captured region's. Set by
// L2D_CPU_OP at the entry of every op that allocates or takes host scalars; nested ops (a default
// composition calling CPU ops) name the innermost one, and the outer name comes back on return.
class CpuOpScope {
 public:
  explicit CpuOpScope(const char* op) noexcept : prev_(current()) { current() = op; }
  ~CpuOpScope() { current() = prev_; }
  CpuOpScope(const CpuOpScope&) = delete;
  CpuOpScope& operator=(const CpuOpScope&) = delete;
  static const char*& current() noexcept {
    thread_local const char* op = nullptr;
    return op;
  }

 private:
  const char* prev_;
};
#define L2D_CPU_OP(name) const ::l2d::cpu::CpuOpScope l2d_cpu_op_scope_(name)

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads), audit_captures_(capture_audit_from_env()) {}

  std::string name() const override { return "cpu"; }
  DType float_dtype() const override { return DType::F32; }
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* ptr, size_t bytes) override;
  size_t bytes_in_use() const override { return in_use_; }
  size_t peak_bytes() const override { return peak_; }

  Tensor from_host(const HostTensor& host) override;
  HostTensor to_host(const Tensor& t) override;
  void synchronize() override { audit_host_op("synchronize"); }
  Tensor zeros(const Shape& shape, DType dtype) override;
  void fill(Tensor& t, float value) override;

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) override;
  Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                      const Tensor* residual, const Conv2dParams& p) override;
  Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) override;
  Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) override;
  Tensor matmul(const Tensor& a, const Tensor& b) override;
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                    bool fuse_silu) override;
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override;
  Tensor group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                           bool fuse_silu) override;
  Tensor linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual, int64_t height,
                         int64_t width) override;
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
  void image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) override;
  void upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) override;
  Tensor image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                              int64_t out_w) override;
  void image_to_u8(const Tensor& x, Tensor& out) override;
  void download_bytes(const Tensor& src, uint8_t* host, size_t bytes) override;

  // Capture audit (capture_audit.cpp), on with L2D_CAPTURE_AUDIT=1 (read once per context;
  // anything but 0/1 is L2D_ERR_INVALID_ARGUMENT): capture() runs the region and remembers it,
  // replay() runs it again; inside either, a host transfer, a synchronize or an allocation
  // sequence other than the captured one throws L2D_ERR_INTERNAL naming the op. So the CPU tests
  // prove a region is capturable by CUDA graphs. Off: the default (eager, handle 0).
  int64_t capture(const std::function<void()>& region, std::string* why) override;
  void replay(int64_t handle) override;
  void release_capture(int64_t handle) noexcept override;
  static bool capture_audit_from_env();

  ThreadPool& pool() { return pool_; }

 private:
  // linear, plus the residual (when non-null) added in the bias pass.
  Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual);
  // conv2d (image_bias and residual null) and conv2d_fused (ops_dense.cpp).
  Tensor conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                     const Tensor* residual, const Conv2dParams& p);
  // The attention ops on operands read with a row stride (ld, in floats): the unpacked ops pass
  // H*D, the packed ones (self_attention, stream_temporal_attention_qkv) 3 H*D, with no copies.
  struct AttnRows {
    const float* p;
    int64_t ld;
  };
  Tensor attention_impl(AttnRows q, AttnRows k, AttnRows v, int64_t B, int64_t Lq, int64_t Lk, int64_t Bk, int64_t HD,
                        int heads, AttnMask mask);
  Tensor stream_temporal_impl(AttnRows q, AttnRows k, AttnRows v, int64_t R, int64_t P, int64_t C, Tensor& cache,
                              const Tensor& qpe, const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                              const Tensor& update_idx, const Tensor& bias, int heads);
  struct Recorded;
  // Inside an audited region on this thread: a host-side op throws (see capture()).
  void audit_host_op(const char* op) const;
  void audit_alloc(size_t bytes) { audit_value("allocation", bytes); }
  // A value the captured work depends on (allocation sizes, host scalars of ops): a replay must
  // see the same sequence.
  void audit_value(const char* what, uint64_t value);
  Tensor normal_fill(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw);
  void run_audited(const std::function<void()>& region, Recorded* record, const Recorded* expect);

  ThreadPool pool_;
  std::atomic<size_t> in_use_{0}, peak_{0};
  const bool audit_captures_;
  struct Recorded {
    std::function<void()> region;
    std::vector<uint64_t> values;  // audit_value() sequence
    std::vector<const char*> ops;  // ... and the op that made each (CpuOpScope; nullptr: none)
  };
  std::mutex recorded_mutex_;
  std::map<int64_t, Recorded> recorded_;
  int64_t next_handle_ = 1;
};

}  // namespace l2d::cpu
