// counting_backend.h: a Backend that forwards every op to another backend and counts the calls per
// op (and the multiply-add work of the GEMM-shaped ops). It measures what a model change removes
// ("ops per streamed frame") on any backend without touching the backends themselves; the unet
// session uses it when its config says {"count_ops": true}.
//
// Tensors made by the forwarded ops belong to the inner backend. Only Backend::concat (defined in
// the base class) allocates through this wrapper, which forwards raw_alloc/raw_free, so the wrapper
// must outlive such tensors: keep it next to the state that may hold them (e.g. in the session).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "backend.h"

namespace l2d {

class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(Backend& inner) : in_(inner) {}

  // Calls per op name ("linear", "attention", ...) since the last reset(); write_slice includes
  // the ones concat makes.
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  int64_t total() const;
  // 2 * M * N * K summed over linear, linear_add, linear_geglu (N = 2C), linear_to_image and matmul calls (the FLOPs
  // of the GEMMs a backend runs).
  double gemm_flops() const { return gemm_flops_; }
  void reset();

  std::string name() const override { return in_.name(); }
  DType float_dtype() const override { return in_.float_dtype(); }
  void* raw_alloc(size_t bytes) override { return in_.raw_alloc(bytes); }
  void raw_free(void* ptr, size_t bytes) override { in_.raw_free(ptr, bytes); }
  size_t bytes_in_use() const override { return in_.bytes_in_use(); }
  size_t peak_bytes() const override { return in_.peak_bytes(); }
  size_t graph_reserved_bytes() const override { return in_.graph_reserved_bytes(); }
  std::string kernel_info_json() override { return in_.kernel_info_json(); }

  Tensor from_host(const HostTensor& host) override;
  HostTensor to_host(const Tensor& t) override;
  void synchronize() override { in_.synchronize(); }
  Tensor zeros(const Shape& shape, DType dtype) override;
  void fill(Tensor& t, float value) override;

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) override;
  Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                      const Tensor* residual, const Conv2dParams& p) override;
  Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) override;
  Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) override;
  Tensor linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) override;
  Tensor matmul(const Tensor& a, const Tensor& b) override;
  Tensor linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual, int64_t height,
                         int64_t width) override;
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                    bool fuse_silu) override;
  Tensor group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                           bool fuse_silu) override;
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) override;
  Tensor stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache, const Tensor& qpe,
                                   const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
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
  bool fits_frames_on_device() const override { return in_.fits_frames_on_device(); }
  void image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) override;
  void upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) override;
  Tensor image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                              int64_t out_w) override;
  void image_to_u8(const Tensor& x, Tensor& out) override;
  void download_bytes(const Tensor& src, uint8_t* host, size_t bytes) override;
  double image_cosine_similarity(const Tensor& a, const Tensor& b) override;
  // Capture and stage profiling belong to the inner backend (not counted).
  int64_t capture(const std::function<void()>& region, std::string* why) override { return in_.capture(region, why); }
  void replay(int64_t handle) override { in_.replay(handle); }
  void release_capture(int64_t handle) noexcept override { in_.release_capture(handle); }
  void set_stage_profiling(bool on) override { in_.set_stage_profiling(on); }
  uint64_t stage_begin() noexcept override { return in_.stage_begin(); }
  void stage_end(const char* stage, uint64_t token) noexcept override { in_.stage_end(stage, token); }
  std::string stage_times_json() override { return in_.stage_times_json(); }

 private:
  void count(const char* op) { ++counts_[op]; }

  Backend& in_;
  std::map<std::string, int64_t> counts_;
  double gemm_flops_ = 0;
};

}  // namespace l2d
