// Convolutions, linear layers and attention of the CPU backend, all reduced to gemm().
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend_cpu.h"
#include "gemm.h"

namespace l2d::cpu {

Tensor CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
  L2D_CPU_OP("conv2d");
  return conv2d_impl(x, w, bias, nullptr, nullptr, p);
}

Tensor CpuBackend::conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                                const Tensor* residual, const Conv2dParams& p) {
  L2D_CPU_OP("conv2d_fused");
  return conv2d_impl(x, w, bias, image_bias, residual, p);
}

// Convolution as im2col + GEMM per image, in chunks of output rows so the column buffer stays
// under ~32 MB even for 512x512 TAESD layers. Then one pass per image adds the bias, the image bias
// (its row n, or its one row) and the residual: ((acc + bias) + image_bias) + residual, the roundings
// of conv2d followed by binary Adds, so conv2d_fused is bit-identical to the default composition.
Tensor CpuBackend::conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                               const Tensor* residual, const Conv2dParams& p) {
  L2D_ASSERT(x.ndim() == 4 && w.ndim() == 4 && x.dim(1) == w.dim(1));
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), KH = w.dim(2), KW = w.dim(3);
  const int64_t Ho = (H + p.pad_top + p.pad_bottom - KH) / p.stride_h + 1;
  const int64_t Wo = (W + p.pad_left + p.pad_right - KW) / p.stride_w + 1;
  L2D_ASSERT(Ho > 0 && Wo > 0);
  if (bias) L2D_ASSERT(bias->numel() == O);
  if (image_bias)
    L2D_ASSERT(image_bias->ndim() == 2 && (image_bias->dim(0) == N || image_bias->dim(0) == 1) &&
               image_bias->dim(1) == O);
  if (residual) L2D_ASSERT(residual->shape() == Shape({N, O, Ho, Wo}));
  Tensor y = empty({N, O, Ho, Wo});
  const float* xp = x.ptr<float>();
  const float* wp = w.ptr<float>();
  float* yp = y.ptr<float>();
  const int64_t K = C * KH * KW;
  const bool pointwise = KH == 1 && KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
                         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
  const int64_t rows_per_chunk = std::max<int64_t>(1, std::min<int64_t>(Ho, (8 << 20) / std::max<int64_t>(1, K * Wo)));
  std::vector<float> col;
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = xp + n * C * H * W;
    float* yn = yp + n * O * Ho * Wo;
    if (pointwise) {
      gemm({O, H * W, C, wp, C, false, xn, H * W, false, yn, H * W, false}, &pool_);
    } else {
      for (int64_t r0 = 0; r0 < Ho; r0 += rows_per_chunk) {
        const int64_t rows = std::min(rows_per_chunk, Ho - r0);
        const int64_t cols = rows * Wo;
        col.resize(size_t(K * cols));
        pool_.parallel_for(K, 4, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) {
            const int64_t c = k / (KH * KW), kh = (k / KW) % KH, kw = k % KW;
            float* dst = col.data() + k * cols;
            // Output columns whose input column ix = ox*stride - pad + kw lies inside [0, W):
            // [ox_lo, ox_hi). Outside it (padding) the row is zero; inside, a plain (strided) copy.
            const int64_t off = kw - p.pad_left;
            const int64_t ox_lo = std::min<int64_t>(Wo, off >= 0 ? 0 : (-off + p.stride_w - 1) / p.stride_w);
            const int64_t ox_hi = std::max<int64_t>(ox_lo, std::min<int64_t>(Wo, (W - 1 - off) / p.stride_w + 1));
            for (int64_t oy = 0; oy < rows; ++oy) {
              const int64_t iy = (r0 + oy) * p.stride_h - p.pad_top + kh;
              float* d = dst + oy * Wo;
              if (iy < 0 || iy >= H || W - 1 - off < 0) {
                std::fill(d, d + Wo, 0.f);
                continue;
              }
              const float* src = xn + (c * H + iy) * W + off;
              std::fill(d, d + ox_lo, 0.f);
              if (p.stride_w == 1) {
                std::copy(src + ox_lo, src + ox_hi, d + ox_lo);
              } else {
                for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d[ox] = src[ox * p.stride_w];
              }
              std::fill(d + ox_hi, d + Wo, 0.f);
            }
          }
        });
        gemm({O, cols, K, wp, K, false, col.data(), cols, false, yn + r0 * Wo, Ho * Wo, false}, &pool_);
      }
    }
    const float* bp = bias ? bias->ptr<float>() : nullptr;
    const float* ibp = image_bias ? image_bias->ptr<float>() + (image_bias->dim(0) == 1 ? 0 : n * O) : nullptr;
    const float* rn = residual ? residual->ptr<float>() + n * O * Ho * Wo : nullptr;
    if (bp && !ibp && !rn) {  // plain conv2d: the bias pass it always had
      for (int64_t o = 0; o < O; ++o) {
        float* plane = yn + o * Ho * Wo;
        for (int64_t i = 0; i < Ho * Wo; ++i) plane[i] += bp[o];
      }
    } else if (ibp || rn) {
      // Each present term added (and rounded) in the order of the composition's Adds.
      pool_.parallel_for(O, 8, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
          float* plane = yn + o * Ho * Wo;
          const float* r = rn ? rn + o * Ho * Wo : nullptr;
          for (int64_t i = 0; i < Ho * Wo; ++i) {
            float v = plane[i];
            if (bp) v += bp[o];
            if (ibp) v += ibp[o];
            if (r) v += r[i];
            plane[i] = v;
          }
        }
      });
    }
  }
  return y;
}

Tensor CpuBackend::conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) {
  L2D_CPU_OP("conv_transpose2d");
  L2D_ASSERT(x.ndim() == 4 && w.ndim() == 4 && x.dim(1) == w.dim(0) && w.dim(2) == stride && w.dim(3) == stride);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(1), k = stride;
  Tensor y = empty({N, O, H * k, W * k});
  // Non-overlapping (stride == kernel): out[n,o,y*k+i,x*k+j] = sum_c x[n,c,y,x] w[c,o,i,j] + b[o].
  // As GEMM: T[(o,i,j), (y,x)] = W^T[(o,i,j), c] @ X[c, (y,x)], then scatter.
  std::vector<float> t(static_cast<size_t>(O * k * k * H * W));
  for (int64_t n = 0; n < N; ++n) {
    gemm({O * k * k, H * W, C, w.ptr<float>(), O * k * k, true, x.ptr<float>() + n * C * H * W, H * W, false, t.data(),
          H * W, false},
         &pool_);
    float* yn = y.ptr<float>() + n * O * H * k * W * k;
    for (int64_t o = 0; o < O; ++o) {
      const float b = bias ? bias->ptr<float>()[o] : 0.f;
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) {
          const float* src = t.data() + ((o * k + i) * k + j) * H * W;
          for (int64_t yy = 0; yy < H; ++yy)
            for (int64_t xx = 0; xx < W; ++xx) yn[(o * H * k + yy * k + i) * W * k + xx * k + j] = src[yy * W + xx] + b;
        }
    }
  }
  return y;
}

Tensor CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  L2D_CPU_OP("linear");
  return linear_impl(x, w, bias, nullptr);
}

Tensor CpuBackend::linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) {
  L2D_CPU_OP("linear_add");
  return linear_impl(x, w, bias, &residual);
}

// y = x w^T, then per element (y + bias) + residual in one pass: the same roundings, in the same
// order, as linear followed by binary Add, so the fused op is bit-identical to the pair.
Tensor CpuBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) {
  const int64_t K = x.dim(-1), N = w.dim(0);
  L2D_ASSERT(w.ndim() == 2 && w.dim(1) == K);
  const int64_t M = x.numel() / K;
  Shape out = x.shape();
  out.back() = N;
  if (residual) L2D_ASSERT(residual->shape() == out);
  Tensor y = empty(out);
  gemm({M, N, K, x.ptr<float>(), K, false, w.ptr<float>(), K, true, y.ptr<float>(), N, false}, &pool_);
  float* yp = y.ptr<float>();
  if (bias && residual) {
    const float* bp = bias->ptr<float>();
    const float* rp = residual->ptr<float>();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) yp[m * N + n] = (yp[m * N + n] + bp[n]) + rp[m * N + n];
  } else if (bias) {
    const float* bp = bias->ptr<float>();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) yp[m * N + n] += bp[n];
  } else if (residual) {
    const float* rp = residual->ptr<float>();
    for (int64_t i = 0; i < M * N; ++i) yp[i] += rp[i];
  }
  return y;
}

// Two bit-identical forms (gemm() sums every output element over k in the same order whatever the
// operands' roles; bias and residual are added per element as (y + bias) + residual, like linear,
// permute and binary Add):
//  - many pixels: per image y_n [O, P] = w [O, K] @ t_n^T (t_n [P, K] as a transposed B), written
//    in place as NCHW, then one bias/residual pass: no transposing pass at all;
//  - few pixels (the 8x8 and 16x16 levels): every thread would repack the whole [O, K] weight per
//    image for a thin product, so run linear's GEMM [N*P, O] into scratch and fuse the transpose
//    with the bias/residual pass (blocks of 32 channels: contiguous reads, sequential row writes).
Tensor CpuBackend::linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                   int64_t height, int64_t width) {
  L2D_CPU_OP("linear_to_image");
  L2D_ASSERT(t.ndim() == 3 && w.ndim() == 2 && t.dim(2) == w.dim(1) && t.dim(1) == height * width);
  const int64_t N = t.dim(0), P = t.dim(1), K = t.dim(2), O = w.dim(0);
  if (bias) L2D_ASSERT(bias->numel() == O);
  Tensor y = empty({N, O, height, width});
  if (residual) L2D_ASSERT(residual->shape() == y.shape());
  float* yp = y.ptr<float>();
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  const float* rp = residual ? residual->ptr<float>() : nullptr;
  // out[i] from the product's value v (out and r at the same NCHW index i).
  const auto finish = [&](float v, int64_t o, int64_t i) {
    if (bp) v += bp[o];
    if (rp) v += rp[i];
    return v;
  };
  constexpr int64_t kMinPixelsInPlace = 512;
  if (P >= kMinPixelsInPlace) {
    for (int64_t n = 0; n < N; ++n)
      gemm({O, P, K, w.ptr<float>(), K, false, t.ptr<float>() + n * P * K, K, true, yp + n * O * P, P, false}, &pool_);
    if (!bp && !rp) return y;
    pool_.parallel_for(N * O, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t i = r * P; i < (r + 1) * P; ++i) yp[i] = finish(yp[i], r % O, i);
    });
    return y;
  }
  Tensor tmp = empty({N * P, O});
  float* tp = tmp.ptr<float>();
  gemm({N * P, O, K, t.ptr<float>(), K, false, w.ptr<float>(), K, true, tp, O, false}, &pool_);
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (O + kBlock - 1) / kBlock;
  pool_.parallel_for(N * blocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t n = k / blocks, o0 = (k % blocks) * kBlock, o1 = std::min(O, o0 + kBlock);
      for (int64_t p = 0; p < P; ++p) {
        const float* src = tp + (n * P + p) * O;
        for (int64_t o = o0; o < o1; ++o) {
          const int64_t i = (n * O + o) * P + p;
          yp[i] = finish(src[o], o, i);
        }
      }
    }
  });
  return y;
}

Tensor CpuBackend::matmul(const Tensor& a, const Tensor& b) {
  L2D_CPU_OP("matmul");
  L2D_ASSERT(a.ndim() == 3 && b.ndim() == 3 && a.dim(2) == b.dim(1));
  const int64_t Ba = a.dim(0), Bb = b.dim(0), M = a.dim(1), K = a.dim(2), N = b.dim(2);
  L2D_ASSERT(Ba == Bb || Ba == 1 || Bb == 1);
  const int64_t B = std::max(Ba, Bb);
  Tensor y = empty({B, M, N});
  for (int64_t i = 0; i < B; ++i)
    gemm({M, N, K, a.ptr<float>() + (Ba == 1 ? 0 : i) * M * K, K, false, b.ptr<float>() + (Bb == 1 ? 0 : i) * K * N, N,
          false, y.ptr<float>() + i * M * N, N, false},
         &pool_);
  return y;
}

// Blocked exact attention: per (batch, head) and block of 64 queries, S = q k^T * scale via GEMM,
// a numerically stable softmax in place, then O = S v via GEMM. Memory O(64 * Lk) per worker.
Tensor CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) {
  L2D_CPU_OP("attention");
  L2D_ASSERT(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3);
  const int64_t B = q.dim(0), Lq = q.dim(1), HD = q.dim(2), Lk = k.dim(1);
  const int64_t Bk = k.dim(0);
  L2D_ASSERT(k.dim(2) == HD && v.dim(2) == HD && v.dim(1) == Lk && (Bk == B || Bk == 1) && v.dim(0) == Bk);
  return attention_impl({q.ptr<float>(), HD}, {k.ptr<float>(), HD}, {v.ptr<float>(), HD}, B, Lq, Lk, Bk, HD, heads,
                        mask);
}

// q, k, v read in place from the packed rows (stride 3C): the GEMMs pack their operands, so the
// result is bit-identical to attention() on the three slices, without copying them.
Tensor CpuBackend::self_attention(const Tensor& qkv, int heads, AttnMask mask) {
  L2D_CPU_OP("self_attention");
  L2D_ASSERT(qkv.ndim() == 3 && qkv.dim(2) % 3 == 0);
  const int64_t B = qkv.dim(0), L = qkv.dim(1), ld = qkv.dim(2), C = ld / 3;
  const float* p = qkv.ptr<float>();
  return attention_impl({p, ld}, {p + C, ld}, {p + 2 * C, ld}, B, L, L, B, C, heads, mask);
}

Tensor CpuBackend::attention_impl(AttnRows q, AttnRows k, AttnRows v, int64_t B, int64_t Lq, int64_t Lk, int64_t Bk,
                                  int64_t HD, int heads, AttnMask mask) {
  L2D_ASSERT(heads > 0 && HD % heads == 0);
  const int64_t D = HD / heads;
  const float scale = 1.f / std::sqrt(float(D));
  Tensor y = empty({B, Lq, HD});
  constexpr int64_t QB = 64;
  const int64_t qblocks = (Lq + QB - 1) / QB;
  const int64_t jobs = B * heads * qblocks;
  pool_.parallel_for(jobs, 1, [&](int64_t j0, int64_t j1) {
    std::vector<float> s(static_cast<size_t>(QB * Lk));
    for (int64_t job = j0; job < j1; ++job) {
      const int64_t b = job / (heads * qblocks), h = (job / qblocks) % heads, qb = job % qblocks;
      const int64_t i0 = qb * QB, rows = std::min(QB, Lq - i0);
      const int64_t bk = Bk == 1 ? 0 : b;
      const float* qp = q.p + (b * Lq + i0) * q.ld + h * D;
      const float* kp = k.p + bk * Lk * k.ld + h * D;
      const float* vp = v.p + bk * Lk * v.ld + h * D;
      gemm({rows, Lk, D, qp, q.ld, false, kp, k.ld, true, s.data(), Lk, false}, nullptr);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s.data() + r * Lk;
        const int64_t valid = mask == AttnMask::Causal ? std::min(Lk, i0 + r + 1) : Lk;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, row[j] * scale);
        float sum = 0.f;
        for (int64_t j = 0; j < valid; ++j) {
          row[j] = std::exp(row[j] * scale - mx);
          sum += row[j];
        }
        const float inv = 1.f / sum;
        for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
        for (int64_t j = valid; j < Lk; ++j) row[j] = 0.f;
      }
      gemm({rows, D, Lk, s.data(), Lk, false, vp, v.ld, false, y.ptr<float>() + (b * Lq + i0) * HD + h * D, HD, false},
           nullptr);
    }
  });
  return y;
}

Tensor CpuBackend::stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                             const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                             const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                             int heads) {
  L2D_CPU_OP("stream_temporal_attention");
  L2D_ASSERT(q.ndim() == 3 && k.shape() == q.shape() && v.shape() == q.shape());
  const int64_t C = q.dim(2);
  return stream_temporal_impl({q.ptr<float>(), C}, {k.ptr<float>(), C}, {v.ptr<float>(), C}, q.dim(0), q.dim(1), C,
                              cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
}

// q, k, v read in place from the packed rows (stride 3C); the same arithmetic as the unpacked op.
Tensor CpuBackend::stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe,
                                                 const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                                                 const Tensor& update_idx, const Tensor& bias, int heads) {
  L2D_CPU_OP("stream_temporal_attention_qkv");
  L2D_ASSERT(qkv.ndim() == 3 && qkv.dim(2) % 3 == 0);
  const int64_t ld = qkv.dim(2), C = ld / 3;
  const float* p = qkv.ptr<float>();
  return stream_temporal_impl({p, ld}, {p + C, ld}, {p + 2 * C, ld}, qkv.dim(0), qkv.dim(1), C, cache, qpe, kpe, vpe,
                              pe_idx, update_idx, bias, heads);
}

Tensor CpuBackend::stream_temporal_impl(AttnRows q, AttnRows k, AttnRows v, int64_t R, int64_t P, int64_t C,
                                        Tensor& cache, const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                        const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                        int heads) {
  L2D_ASSERT(cache.ndim() == 5);
  const int64_t Wn = cache.dim(3), max_len = qpe.dim(0);
  L2D_ASSERT(cache.dim(0) == R && cache.dim(1) == 2 && cache.dim(2) == P && cache.dim(4) == C);
  L2D_ASSERT(pe_idx.dtype() == DType::I32 && update_idx.dtype() == DType::I32);
  L2D_ASSERT(pe_idx.ndim() == 2 && pe_idx.dim(0) == R && pe_idx.dim(1) == Wn && update_idx.numel() == R);
  L2D_ASSERT(bias.ndim() == 2 && bias.dim(0) == R && bias.dim(1) == Wn && bias.dtype() == DType::F32);
  L2D_ASSERT(qpe.ndim() == 2 && qpe.dim(1) == C && kpe.shape() == qpe.shape() && vpe.shape() == qpe.shape());
  L2D_ASSERT(heads > 0 && C % heads == 0);
  const int32_t* pidx = pe_idx.ptr<int32_t>();
  const int32_t* uidx = update_idx.ptr<int32_t>();
  for (int64_t r = 0; r < R; ++r) {
    if (uidx[r] < 0 || uidx[r] >= Wn) fail(L2D_ERR_INVALID_ARGUMENT, "update_idx[", r, "] = ", uidx[r], " is outside the window");
    for (int64_t s = 0; s < Wn; ++s)
      if (pidx[r * Wn + s] < 0 || pidx[r * Wn + s] >= max_len)
        fail(L2D_ERR_INVALID_ARGUMENT, "pe_idx[", r, ", ", s, "] = ", pidx[r * Wn + s], " is outside 0..", max_len - 1);
  }
  const int64_t D = C / heads;
  const float scale = 1.f / std::sqrt(float(D));
  Tensor y = empty({R, P, C});
  float* cp = cache.ptr<float>();
  const float* bp = bias.ptr<float>();
  pool_.parallel_for(R * P, 16, [&](int64_t j0, int64_t j1) {
    std::vector<float> scores(static_cast<size_t>(Wn));
    for (int64_t job = j0; job < j1; ++job) {
      const int64_t r = job / P, p = job % P;
      float* ck = cp + ((r * 2 + 0) * P + p) * Wn * C;  // [W, C]
      float* cv = cp + ((r * 2 + 1) * P + p) * Wn * C;
      const int64_t slot = uidx[r];
      std::memcpy(ck + slot * C, k.p + job * k.ld, size_t(C) * 4);
      std::memcpy(cv + slot * C, v.p + job * v.ld, size_t(C) * 4);
      const float* qrow = q.p + job * q.ld;
      const float* qpe_row = qpe.ptr<float>() + int64_t(pidx[r * Wn + slot]) * C;
      float* out = y.ptr<float>() + job * C;
      for (int h = 0; h < heads; ++h) {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t s = 0; s < Wn; ++s) {
          const float* kpe_row = kpe.ptr<float>() + int64_t(pidx[r * Wn + s]) * C;
          float dot = 0.f;
          for (int64_t d = h * D; d < (h + 1) * D; ++d) dot += (qrow[d] + qpe_row[d]) * (ck[s * C + d] + kpe_row[d]);
          scores[size_t(s)] = dot * scale + bp[r * Wn + s];
          mx = std::max(mx, scores[size_t(s)]);
        }
        float sum = 0.f;
        for (int64_t s = 0; s < Wn; ++s) {
          scores[size_t(s)] = std::exp(scores[size_t(s)] - mx);
          sum += scores[size_t(s)];
        }
        for (int64_t d = h * D; d < (h + 1) * D; ++d) out[d] = 0.f;
        for (int64_t s = 0; s < Wn; ++s) {
          const float wgt = scores[size_t(s)] / sum;
          const float* vpe_row = vpe.ptr<float>() + int64_t(pidx[r * Wn + s]) * C;
          for (int64_t d = h * D; d < (h + 1) * D; ++d) out[d] += wgt * (cv[s * C + d] + vpe_row[d]);
        }
      }
    }
  });
  return y;
}

}  // namespace l2d::cpu
