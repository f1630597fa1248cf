// Normalisation, resampling, pooling, embedding and reduction ops of the CPU backend. Statistics
// accumulate in double so the oracle is more accurate than the fp32 reference it is checked against.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend_cpu.h"

namespace l2d::cpu {

namespace {

// Mean and 1 / std of every (n, group) of x [N, C, S]: double accumulation, biased variance.
void group_stats(const float* xp, int64_t N, int64_t C, int64_t S, int groups, float eps, ThreadPool& pool,
                 std::vector<double>& mean, std::vector<double>& rstd) {
  const int64_t cg = C / groups, count = cg * S;
  mean.assign(size_t(N * groups), 0.0);
  rstd.assign(size_t(N * groups), 0.0);
  pool.parallel_for(N * groups, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / groups, grp = j % groups;
      const float* base = xp + (n * C + grp * cg) * S;
      double sum = 0;
      for (int64_t i = 0; i < count; ++i) sum += base[i];
      const double m = sum / double(count);
      double var = 0;
      for (int64_t i = 0; i < count; ++i) var += (base[i] - m) * (base[i] - m);
      var /= double(count);
      mean[size_t(j)] = m;
      rstd[size_t(j)] = 1.0 / std::sqrt(var + double(eps));
    }
  });
}

inline float gn_value(float x, double mean, double rstd, float g, float b, bool silu) {
  float v = float((x - mean) * rstd) * g + b;
  if (silu) v = v / (1.f + std::exp(-v));
  return v;
}

}  // namespace

Tensor CpuBackend::group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                              bool fuse_silu) {
  L2D_CPU_OP("group_norm");
  L2D_ASSERT(x.ndim() >= 2);
  const int64_t N = x.dim(0), C = x.dim(1);
  L2D_ASSERT(C % groups == 0 && gamma.numel() == C && beta.numel() == C);
  const int64_t S = x.numel() / (N * C), cg = C / groups;
  Tensor y = empty(x.shape());
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* g = gamma.ptr<float>();
  const float* b = beta.ptr<float>();
  pool_.parallel_for(N * groups, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / groups, grp = j % groups;
      const float* base = xp + (n * C + grp * cg) * S;
      const int64_t count = cg * S;
      double sum = 0;
      for (int64_t i = 0; i < count; ++i) sum += base[i];
      const double mean = sum / double(count);
      double var = 0;
      for (int64_t i = 0; i < count; ++i) var += (base[i] - mean) * (base[i] - mean);
      var /= double(count);
      const double rstd = 1.0 / std::sqrt(var + double(eps));
      for (int64_t c = 0; c < cg; ++c) {
        const int64_t ch = grp * cg + c;
        const float* src = base + c * S;
        float* dst = yp + (n * C + ch) * S;
        for (int64_t i = 0; i < S; ++i) dst[i] = gn_value(src[i], mean, rstd, g[ch], b[ch], fuse_silu);
      }
    }
  });
  return y;
}

// The same values as group_norm, written at [n, i, ch] instead of [n, ch, i]: no permute pass. Per
// block of kBlock positions, every channel's run of kBlock inputs is read contiguously and written
// down a column of the block's kBlock output rows, which stay in cache while the channels advance.
Tensor CpuBackend::group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                     bool fuse_silu) {
  L2D_CPU_OP("group_norm_tokens");
  L2D_ASSERT(x.ndim() >= 2 && groups > 0);
  const int64_t N = x.dim(0), C = x.dim(1);
  L2D_ASSERT(C % groups == 0 && gamma.numel() == C && beta.numel() == C);
  const int64_t S = N > 0 && C > 0 ? x.numel() / (N * C) : 0, cg = C / groups;
  Tensor y = empty({N, S, C});
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* g = gamma.ptr<float>();
  const float* b = beta.ptr<float>();
  std::vector<double> mean, rstd;
  group_stats(xp, N, C, S, groups, eps, pool_, mean, rstd);
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (S + kBlock - 1) / kBlock;
  pool_.parallel_for(N * blocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t n = k / blocks, s0 = (k % blocks) * kBlock, s1 = std::min(S, s0 + kBlock);
      for (int64_t ch = 0; ch < C; ++ch) {
        const size_t j = size_t(n * groups + ch / cg);
        const float* src = xp + (n * C + ch) * S;
        for (int64_t i = s0; i < s1; ++i)
          yp[(n * S + i) * C + ch] = gn_value(src[i], mean[j], rstd[j], g[ch], b[ch], fuse_silu);
      }
    }
  });
  return y;
}

Tensor CpuBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  L2D_CPU_OP("layer_norm");
  const int64_t C = x.dim(-1), rows = x.numel() / C;
  L2D_ASSERT(gamma.numel() == C && beta.numel() == C);
  Tensor y = empty(x.shape());
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* g = gamma.ptr<float>();
  const float* b = beta.ptr<float>();
  pool_.parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = xp + r * C;
      double sum = 0;
      for (int64_t i = 0; i < C; ++i) sum += src[i];
      const double mean = sum / double(C);
      double var = 0;
      for (int64_t i = 0; i < C; ++i) var += (src[i] - mean) * (src[i] - mean);
      const double rstd = 1.0 / std::sqrt(var / double(C) + double(eps));
      float* dst = yp + r * C;
      for (int64_t i = 0; i < C; ++i) dst[i] = float((src[i] - mean) * rstd) * g[i] + b[i];
    }
  });
  return y;
}

Tensor CpuBackend::upsample_nearest(const Tensor& x, int out_h, int out_w) {
  L2D_CPU_OP("upsample_nearest");
  L2D_ASSERT(x.ndim() == 4);
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = empty({x.dim(0), x.dim(1), out_h, out_w});
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool_.parallel_for(NC, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t oy = 0; oy < out_h; ++oy) {
        // PyTorch "nearest": src = floor(dst * in / out) computed in float as PyTorch does.
        const int64_t iy = std::min<int64_t>(H - 1, int64_t(std::floor(float(oy) * (float(H) / float(out_h)))));
        for (int64_t ox = 0; ox < out_w; ++ox) {
          const int64_t ix = std::min<int64_t>(W - 1, int64_t(std::floor(float(ox) * (float(W) / float(out_w)))));
          yp[(c * out_h + oy) * out_w + ox] = xp[(c * H + iy) * W + ix];
        }
      }
  });
  return y;
}

// PyTorch's source coordinate for linear interpolation.
static inline float source_coord(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? float(dst) * float(in - 1) / float(out - 1) : 0.f;
  const float s = (float(dst) + 0.5f) * (float(in) / float(out)) - 0.5f;
  return s < 0.f ? 0.f : s;
}

Tensor CpuBackend::resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) {
  L2D_CPU_OP("resize_bilinear");
  L2D_ASSERT(x.ndim() == 4);
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = empty({x.dim(0), x.dim(1), out_h, out_w});
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool_.parallel_for(NC, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t oy = 0; oy < out_h; ++oy) {
        const float sy = source_coord(oy, H, out_h, align_corners);
        const int64_t y0 = std::min<int64_t>(int64_t(sy), H - 1), y1 = std::min<int64_t>(y0 + 1, H - 1);
        const float ly = sy - float(y0);
        for (int64_t ox = 0; ox < out_w; ++ox) {
          const float sx = source_coord(ox, W, out_w, align_corners);
          const int64_t x0 = std::min<int64_t>(int64_t(sx), W - 1), x1 = std::min<int64_t>(x0 + 1, W - 1);
          const float lx = sx - float(x0);
          const float* plane = xp + c * H * W;
          const float top = plane[y0 * W + x0] * (1.f - lx) + plane[y0 * W + x1] * lx;
          const float bot = plane[y1 * W + x0] * (1.f - lx) + plane[y1 * W + x1] * lx;
          yp[(c * out_h + oy) * out_w + ox] = top * (1.f - ly) + bot * ly;
        }
      }
  });
  return y;
}

Tensor CpuBackend::max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) {
  L2D_CPU_OP("max_pool2d");
  L2D_ASSERT(x.ndim() == 4);
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Ho = (H + p.pad_top + p.pad_bottom - kernel) / p.stride_h + 1;
  const int64_t Wo = (W + p.pad_left + p.pad_right - kernel) / p.stride_w + 1;
  Tensor y = empty({x.dim(0), x.dim(1), Ho, Wo});
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool_.parallel_for(NC, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          float m = -std::numeric_limits<float>::infinity();
          for (int ky = 0; ky < kernel; ++ky)
            for (int kx = 0; kx < kernel; ++kx) {
              const int64_t iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy >= 0 && iy < H && ix >= 0 && ix < W) m = std::max(m, xp[(c * H + iy) * W + ix]);
            }
          yp[(c * Ho + oy) * Wo + ox] = m;
        }
  });
  return y;
}

Tensor CpuBackend::embedding(const Tensor& ids, const Tensor& table) {
  L2D_CPU_OP("embedding");
  L2D_ASSERT(ids.dtype() == DType::I32 && table.ndim() == 2);
  const int64_t V = table.dim(0), D = table.dim(1), n = ids.numel();
  Shape out = ids.shape();
  out.push_back(D);
  Tensor y = empty(out);
  const int32_t* ip = ids.ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (ip[i] < 0 || ip[i] >= V) fail(L2D_ERR_INVALID_ARGUMENT, "token id ", ip[i], " is outside the vocabulary (", V, ")");
    std::copy_n(table.ptr<float>() + int64_t(ip[i]) * D, D, y.ptr<float>() + i * D);
  }
  return y;
}

Tensor CpuBackend::minmax_normalize(const Tensor& x) {
  L2D_CPU_OP("minmax_normalize");
  const float* xp = x.ptr<float>();
  const int64_t n = x.numel();
  L2D_ASSERT(n > 0);
  float mn = xp[0], mx = xp[0];
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, xp[i]);
    mx = std::max(mx, xp[i]);
  }
  Tensor y = empty(x.shape());
  float* yp = y.ptr<float>();
  const float range = mx - mn;
  for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mn) / range;
  return y;
}

}  // namespace l2d::cpu
