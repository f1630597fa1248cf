// Packed GEMM in the BLIS style: B is packed into 16-column strips and A into 6-row strips per
// KC-deep block, then a 6x16 register-blocked micro-kernel (GCC vector extensions, so the compiler
// emits AVX2/AVX-512 FMAs for -march=native) runs over the strips. Edges are zero-padded in the
// packs and clipped on write-back.
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace l2d::cpu {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int64_t KC = 256;
constexpr int64_t MC = 120;   // multiple of MR
constexpr int64_t NC = 2048;  // multiple of NR

typedef float v8 __attribute__((vector_size(32), aligned(4)));

inline float a_at(const GemmArgs& g, int64_t i, int64_t k) { return g.trans_a ? g.A[k * g.lda + i] : g.A[i * g.lda + k]; }
inline float b_at(const GemmArgs& g, int64_t k, int64_t j) { return g.trans_b ? g.B[j * g.ldb + k] : g.B[k * g.ldb + j]; }

// Bp[strip][k][NR] for columns j0..j0+nc, depth k0..k0+kc.
void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* bp) {
  for (int64_t js = 0; js < nc; js += NR) {
    const int64_t w = std::min<int64_t>(NR, nc - js);
    float* dst = bp + js * kc;
    if (!g.trans_b && w == NR) {
      for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * NR, g.B + (k0 + k) * g.ldb + j0 + js, NR * sizeof(float));
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < w; ++j) dst[k * NR + j] = b_at(g, k0 + k, j0 + js + j);
        for (int64_t j = w; j < NR; ++j) dst[k * NR + j] = 0.f;
      }
    }
  }
}

// Ap[strip][k][MR] for rows i0..i0+mc.
void pack_a(const GemmArgs& g, int64_t k0, int64_t kc, int64_t i0, int64_t mc, float* ap) {
  for (int64_t is = 0; is < mc; is += MR) {
    const int64_t h = std::min<int64_t>(MR, mc - is);
    float* dst = ap + is * kc;
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < h; ++i) dst[k * MR + i] = a_at(g, i0 + is + i, k0 + k);
      for (int64_t i = h; i < MR; ++i) dst[k * MR + i] = 0.f;
    }
  }
}

void micro_kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int64_t h, int64_t w,
                  bool accumulate) {
  v8 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = v8{};
  for (int64_t k = 0; k < kc; ++k) {
    v8 b0, b1;
    std::memcpy(&b0, bp + k * NR, 32);
    std::memcpy(&b1, bp + k * NR + 8, 32);
    const float* a = ap + k * MR;
    for (int r = 0; r < MR; ++r) {
      const float av = a[r];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int64_t r = 0; r < h; ++r) {
    float tmp[NR];
    std::memcpy(tmp, &acc[r][0], 32);
    std::memcpy(tmp + 8, &acc[r][1], 32);
    float* row = c + r * ldc;
    if (accumulate) {
      for (int64_t j = 0; j < w; ++j) row[j] += tmp[j];
    } else {
      for (int64_t j = 0; j < w; ++j) row[j] = tmp[j];
    }
  }
}

// C[i0:i1, j0:j1] on one thread.
void gemm_tile(const GemmArgs& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  thread_local std::vector<float> bpack, apack;
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = std::min(NC, j1 - jc);
    const int64_t nc_pad = (nc + NR - 1) / NR * NR;
    for (int64_t pc = 0; pc < g.K; pc += KC) {
      const int64_t kc = std::min(KC, g.K - pc);
      bpack.resize(size_t(nc_pad * kc));
      pack_b(g, pc, kc, jc, nc, bpack.data());
      const bool acc = g.accumulate || pc > 0;
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = std::min(MC, i1 - ic);
        const int64_t mc_pad = (mc + MR - 1) / MR * MR;
        apack.resize(size_t(mc_pad * kc));
        pack_a(g, pc, kc, ic, mc, apack.data());
        for (int64_t js = 0; js < nc; js += NR) {
          for (int64_t is = 0; is < mc; is += MR) {
            micro_kernel(kc, apack.data() + is * kc, bpack.data() + js * kc, g.C + (ic + is) * g.ldc + jc + js, g.ldc,
                         std::min<int64_t>(MR, mc - is), std::min<int64_t>(NR, nc - js), acc);
          }
        }
      }
    }
  }
}

}  // namespace

void gemm(const GemmArgs& g, ThreadPool* pool) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.M; ++i) std::memset(g.C + i * g.ldc, 0, size_t(g.N) * sizeof(float));
    return;
  }
  const int threads = pool ? pool->size() : 1;
  const double flops = double(g.M) * double(g.N) * double(g.K);
  if (threads <= 1 || flops < 2e6) {
    gemm_tile(g, 0, g.M, 0, g.N);
    return;
  }
  if (g.N >= int64_t(NR) * threads * 2) {
    // Split columns in whole strips.
    const int64_t strips = (g.N + NR - 1) / NR;
    pool->parallel_for(strips, 1, [&](int64_t s0, int64_t s1) {
      gemm_tile(g, 0, g.M, s0 * NR, std::min(g.N, s1 * NR));
    });
  } else {
    const int64_t strips = (g.M + MR - 1) / MR;
    pool->parallel_for(strips, 1, [&](int64_t s0, int64_t s1) {
      gemm_tile(g, s0 * MR, std::min(g.M, s1 * MR), 0, g.N);
    });
  }
}

}  // namespace l2d::cpu
