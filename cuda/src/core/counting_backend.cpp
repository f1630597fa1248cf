#include "counting_backend.h"

#include <algorithm>

namespace l2d {

int64_t CountingBackend::total() const {
  int64_t n = 0;
  for (const auto& [op, calls] : counts_) n += calls;
  return n;
}

void CountingBackend::reset() {
  counts_.clear();
  gemm_flops_ = 0;
}

Tensor CountingBackend::from_host(const HostTensor& host) {
  count("from_host");
  return in_.from_host(host);
}

HostTensor CountingBackend::to_host(const Tensor& t) {
  count("to_host");
  return in_.to_host(t);
}

Tensor CountingBackend::zeros(const Shape& shape, DType dtype) {
  count("zeros");
  return in_.zeros(shape, dtype);
}

void CountingBackend::fill(Tensor& t, float value) {
  count("fill");
  in_.fill(t, value);
}

Tensor CountingBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
  count("conv2d");
  return in_.conv2d(x, w, bias, p);
}

Tensor CountingBackend::conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                                     const Tensor* residual, const Conv2dParams& p) {
  count("conv2d_fused");
  return in_.conv2d_fused(x, w, bias, image_bias, residual, p);
}

Tensor CountingBackend::conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) {
  count("conv_transpose2d");
  return in_.conv_transpose2d(x, w, bias, stride);
}

Tensor CountingBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  count("linear");
  const double K = double(x.dim(-1)), M = double(x.numel()) / K, N = double(w.dim(0));
  gemm_flops_ += 2 * M * N * K;
  return in_.linear(x, w, bias);
}

Tensor CountingBackend::linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) {
  count("linear_add");
  const double K = double(x.dim(-1)), M = double(x.numel()) / K, N = double(w.dim(0));
  gemm_flops_ += 2 * M * N * K;
  return in_.linear_add(x, w, bias, residual);
}

Tensor CountingBackend::linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) {
  count("linear_geglu");
  const double K = double(x.dim(-1)), M = double(x.numel()) / K, N = double(w.dim(0));
  gemm_flops_ += 2 * M * N * K;
  return in_.linear_geglu(x, w, bias);
}

Tensor CountingBackend::matmul(const Tensor& a, const Tensor& b) {
  count("matmul");
  const double B = double(std::max(a.dim(0), b.dim(0)));
  gemm_flops_ += 2 * B * double(a.dim(1)) * double(b.dim(2)) * double(a.dim(2));
  return in_.matmul(a, b);
}

Tensor CountingBackend::linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                        int64_t height, int64_t width) {
  count("linear_to_image");
  const double K = double(t.dim(-1)), M = double(t.numel()) / K, N = double(w.dim(0));
  gemm_flops_ += 2 * M * N * K;
  return in_.linear_to_image(t, w, bias, residual, height, width);
}

Tensor CountingBackend::group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta,
                                          float eps, bool fuse_silu) {
  count("group_norm_tokens");
  return in_.group_norm_tokens(x, groups, gamma, beta, eps, fuse_silu);
}

Tensor CountingBackend::group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                   bool fuse_silu) {
  count("group_norm");
  return in_.group_norm(x, groups, gamma, beta, eps, fuse_silu);
}

Tensor CountingBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  count("layer_norm");
  return in_.layer_norm(x, gamma, beta, eps);
}

Tensor CountingBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) {
  count("attention");
  return in_.attention(q, k, v, heads, mask);
}

Tensor CountingBackend::stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                                  const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                                  const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                                  int heads) {
  count("stream_temporal_attention");
  return in_.stream_temporal_attention(q, k, v, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
}

Tensor CountingBackend::self_attention(const Tensor& qkv, int heads, AttnMask mask) {
  count("self_attention");
  return in_.self_attention(qkv, heads, mask);
}

Tensor CountingBackend::stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe,
                                                      const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                                                      const Tensor& update_idx, const Tensor& bias, int heads) {
  count("stream_temporal_attention_qkv");
  return in_.stream_temporal_attention_qkv(qkv, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
}

Tensor CountingBackend::unary(const Tensor& x, Unary op, float a, float b) {
  count("unary");
  return in_.unary(x, op, a, b);
}

Tensor CountingBackend::binary(const Tensor& a, const Tensor& b, Binary op) {
  count("binary");
  return in_.binary(a, b, op);
}

Tensor CountingBackend::geglu(const Tensor& x) {
  count("geglu");
  return in_.geglu(x);
}

Tensor CountingBackend::permute(const Tensor& x, const std::vector<int>& perm) {
  count("permute");
  return in_.permute(x, perm);
}

Tensor CountingBackend::slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step) {
  count("slice");
  return in_.slice(x, dim, start, end, step);
}

void CountingBackend::write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) {
  count("write_slice");
  in_.write_slice(dst, src, starts);
}

Tensor CountingBackend::upsample_nearest(const Tensor& x, int out_h, int out_w) {
  count("upsample_nearest");
  return in_.upsample_nearest(x, out_h, out_w);
}

Tensor CountingBackend::resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) {
  count("resize_bilinear");
  return in_.resize_bilinear(x, out_h, out_w, align_corners);
}

Tensor CountingBackend::max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) {
  count("max_pool2d");
  return in_.max_pool2d(x, kernel, p);
}

Tensor CountingBackend::embedding(const Tensor& ids, const Tensor& table) {
  count("embedding");
  return in_.embedding(ids, table);
}

Tensor CountingBackend::minmax_normalize(const Tensor& x) {
  count("minmax_normalize");
  return in_.minmax_normalize(x);
}

Tensor CountingBackend::random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) {
  count("random_normal");
  return in_.random_normal(shape, seed, stream, draw);
}

Tensor CountingBackend::random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream,
                                              const Tensor& counter, int32_t offset) {
  count("random_normal_counter");
  return in_.random_normal_counter(shape, seed, stream, counter, offset);
}

void CountingBackend::counter_add(Tensor& counter, int32_t by) {
  count("counter_add");
  in_.counter_add(counter, by);
}

void CountingBackend::kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) {
  count("kv_advance");
  in_.kv_advance(bias, pe_idx, update_idx, sink);
}

Tensor CountingBackend::image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) {
  count("image_from_u8");
  return in_.image_from_u8(host, n, h, w, channels);
}

Tensor CountingBackend::image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                                          int64_t out_w) {
  count("image_fit_from_u8");
  return in_.image_fit_from_u8(host, h, w, channels, out_h, out_w);
}

void CountingBackend::image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) {
  count("image_to_host");
  in_.image_to_host(x, out_f32, out_u8);
}

void CountingBackend::upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) {
  count("upload_bytes");
  in_.upload_bytes(dst, host, bytes);
}

Tensor CountingBackend::image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                                             int64_t out_w) {
  count("image_fit_from_bytes");
  return in_.image_fit_from_bytes(frame, h, w, channels, out_h, out_w);
}

void CountingBackend::image_to_u8(const Tensor& x, Tensor& out) {
  count("image_to_u8");
  in_.image_to_u8(x, out);
}

void CountingBackend::download_bytes(const Tensor& src, uint8_t* host, size_t bytes) {
  count("download_bytes");
  in_.download_bytes(src, host, bytes);
}

double CountingBackend::image_cosine_similarity(const Tensor& a, const Tensor& b) {
  count("image_cosine_similarity");
  return in_.image_cosine_similarity(a, b);
}

}  // namespace l2d
