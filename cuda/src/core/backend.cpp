// backend.cpp: ops defined once for every backend in terms of other ops.
#include "backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "frame_fit.h"

namespace l2d {

Tensor Backend::concat(const std::vector<Tensor>& xs, int dim) {
  L2D_ASSERT(!xs.empty());
  const int nd = xs[0].ndim();
  if (dim < 0) dim += nd;
  L2D_ASSERT(dim >= 0 && dim < nd);
  Shape out = xs[0].shape();
  out[size_t(dim)] = 0;
  for (const Tensor& t : xs) {
    L2D_ASSERT(t.ndim() == nd && t.dtype() == xs[0].dtype());
    for (int d = 0; d < nd; ++d) L2D_ASSERT(d == dim || t.dim(d) == xs[0].dim(d));
    out[size_t(dim)] += t.dim(dim);
  }
  Tensor y(this, xs[0].dtype(), out);
  std::vector<int64_t> starts(size_t(nd), 0);
  for (const Tensor& t : xs) {
    write_slice(y, t, starts);
    starts[size_t(dim)] += t.dim(dim);
  }
  return y;
}

Tensor Backend::linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) {
  Tensor y = linear(x, w, bias);
  L2D_ASSERT(residual.shape() == y.shape());
  return binary(y, residual, Binary::Add);
}

Tensor Backend::linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) {
  L2D_ASSERT(w.ndim() == 2 && w.dim(0) % 2 == 0);
  return geglu(linear(x, w, bias));
}

Tensor Backend::conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                             const Tensor* residual, const Conv2dParams& p) {
  Tensor y = conv2d(x, w, bias, p);
  const int64_t N = y.dim(0), O = y.dim(1), Ho = y.dim(2), Wo = y.dim(3);
  if (image_bias) {
    const int64_t rows = image_bias->dim(0);
    L2D_ASSERT(image_bias->ndim() == 2 && (rows == N || rows == 1) && image_bias->dim(1) == O);
    y = binary(y.reshape({N, O, Ho * Wo}), image_bias->reshape({rows, O, 1}), Binary::Add).reshape({N, O, Ho, Wo});
  }
  if (residual) {
    L2D_ASSERT(residual->shape() == y.shape());
    y = binary(y, *residual, Binary::Add);
  }
  return y;
}

// The three column blocks of packed projections [.., 3C] as contiguous [.., C] tensors.
static void split_qkv(Backend& be, const Tensor& qkv, Tensor& q, Tensor& k, Tensor& v) {
  L2D_ASSERT(qkv.ndim() == 3 && qkv.dim(2) % 3 == 0);
  const int64_t C = qkv.dim(2) / 3;
  q = be.slice(qkv, 2, 0, C);
  k = be.slice(qkv, 2, C, 2 * C);
  v = be.slice(qkv, 2, 2 * C, 3 * C);
}

Tensor Backend::self_attention(const Tensor& qkv, int heads, AttnMask mask) {
  Tensor q, k, v;
  split_qkv(*this, qkv, q, k, v);
  return attention(q, k, v, heads, mask);
}

Tensor Backend::stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe, const Tensor& kpe,
                                              const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                                              const Tensor& bias, int heads) {
  Tensor q, k, v;
  split_qkv(*this, qkv, q, k, v);
  return stream_temporal_attention(q, k, v, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
}

Tensor Backend::linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                int64_t height, int64_t width) {
  L2D_ASSERT(t.ndim() == 3 && w.ndim() == 2 && t.dim(1) == height * width);
  const int64_t N = t.dim(0), O = w.dim(0);
  Tensor y = permute(linear(t, w, bias).reshape({N, height, width, O}), {0, 3, 1, 2});
  if (!residual) return y;
  L2D_ASSERT(residual->shape() == y.shape());
  return binary(y, *residual, Binary::Add);
}

Tensor Backend::group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                  bool fuse_silu) {
  L2D_ASSERT(x.ndim() >= 2);
  const int64_t N = x.dim(0), C = x.dim(1), S = N > 0 && C > 0 ? x.numel() / (N * C) : 0;
  return permute(group_norm(x, groups, gamma, beta, eps, fuse_silu).reshape({N, C, S}), {0, 2, 1});
}

Tensor Backend::image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                                  int64_t out_w) {
  check_fit_args(host, h, w, channels, out_h, out_w);
  if (h == out_h && w == out_w) return image_from_u8(host, 1, h, w, channels);
  const FitTables t = fit_tables(w, h, out_w, out_h);
  std::vector<float> planar(size_t(3 * out_h * out_w));
  fit_frame_levels(host, w, channels, t, out_w, out_h, planar.data());
  return from_host(HostTensor::from_f32({1, 3, out_h, out_w}, planar.data()));
}

double Backend::image_cosine_similarity(const Tensor& a, const Tensor& b) {
  L2D_REQUIRE(a.ndim() == 4 && a.dim(0) == 1 && a.dim(1) == 3 && a.shape() == b.shape(),
              "image_cosine_similarity takes two [1, 3, H, W] images of one shape, got ", shape_str(a.shape()), " and ",
              shape_str(b.shape()));
  // Interleaved levels [H * W, 3]: round(255 * x) recovers the fitted level exactly (also from
  // fp16, whose error at level / 255 is far below half a level).
  const auto levels = [&](const Tensor& t) {
    const std::vector<float> v = to_host(t).to_f32();
    const size_t hw = v.size() / 3;
    std::vector<uint8_t> u(v.size());
    for (size_t p = 0; p < hw; ++p)
      for (size_t c = 0; c < 3; ++c)
        u[p * 3 + c] = uint8_t(std::nearbyint(255.f * std::min(1.f, std::max(0.f, v[c * hw + p]))));
    return u;
  };
  const std::vector<uint8_t> la = levels(a), lb = levels(b);
  return frame_cosine_similarity(la.data(), lb.data(), int64_t(la.size() / 3), 3);
}

void Backend::replay(int64_t handle) {
  fail(L2D_ERR_INTERNAL, "replay(", handle, "): backend \"", name(), "\" captured nothing");
}

// Host stage timing: the token is the start time in steady-clock nanoseconds (+1, never 0).
uint64_t Backend::stage_begin() noexcept {
  if (!stage_profiling_.load(std::memory_order_relaxed)) return 0;
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count()) +
         1;
}

void Backend::stage_end(const char* stage, uint64_t token) noexcept {
  if (token == 0) return;
  const uint64_t now = uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
  try {
    stage_times_.add(stage, double(now + 1 - token) / 1e6);
  } catch (...) {
    // out of host memory for a map node: the sample is dropped (profiling never fails a frame)
  }
}

}  // namespace l2d
