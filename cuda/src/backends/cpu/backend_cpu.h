// backend_cpu.h: the CPU reference backend. fp32 storage and math, obviously-correct loops except
// where speed matters for CI (GEMM, im2col convolution, blocked attention), multithreaded with a
// small fork-join pool. It is the oracle the CUDA backend is tested against.
#pragma once

#include <atomic>

#include "../../core/backend.h"
#include "thread_pool.h"

namespace l2d::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}

  std::string name() const override { return "cpu"; }
  DType float_dtype() const override { return DType::F32; }
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* ptr, size_t bytes) override;
  size_t bytes_in_use() const override { return in_use_; }
  size_t peak_bytes() const override { return peak_; }

  Tensor from_host(const HostTensor& host) override;
  HostTensor to_host(const Tensor& t) override;
  void synchronize() override {}
  Tensor zeros(const Shape& shape, DType dtype) override;
  void fill(Tensor& t, float value) override;

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) override;
  Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) override;
  Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) override;
  Tensor matmul(const Tensor& a, const Tensor& b) override;
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                    bool fuse_silu) override;
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) override;
  Tensor stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                   const Tensor& qpe, const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                                   const Tensor& update_idx, const Tensor& bias, int heads) override;
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

  ThreadPool& pool() { return pool_; }

 private:
  // linear, plus the residual (when non-null) added in the bias pass.
  Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual);

  ThreadPool pool_;
  std::atomic<size_t> in_use_{0}, peak_{0};
};

}  // namespace l2d::cpu
