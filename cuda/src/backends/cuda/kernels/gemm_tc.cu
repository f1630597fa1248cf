// The "own" tensor-core GEMM. One CTA (8 warps) computes a 128 x BN tile of C[z] (BN = 128 or 64)
// over a range of K (all of it, or one split-K slice), stepping in BK = 32 slices through a
// STAGES-deep ring of shared-memory buffers:
//   - A (always row-major [M, K], k contiguous) and dense B operands arrive by cp.async (16 bytes per
//     instruction, zero-filled past the edges), STAGES - 1 slices ahead of the math;
//   - the im2col B operand (NCHW convolutions) cannot use cp.async (a 3x3 tap shifts rows by one
//     element, so sources are not 16-byte aligned): each thread gathers its elements into registers
//     for slice kt + STAGES - 1 before the math of slice kt and stores them after it, so the global
//     latency hides behind the MMAs. The gather walks k = (c, kh, kw) incrementally (no divides).
//   - math: ldmatrix.x4 (A; B with .trans when B is k-major in shared memory) + mma.sync m16n8k16,
//     fp32 accumulators in registers.
// Epilogue: bias (per row for convolutions, per column for linear), an optional residual (linear_add)
// and fp16 stores (half2 where aligned), or, for split-K, fp32 partials into a workspace that a second
// kernel sums in a fixed order (deterministic: no atomics) before adding the bias and residual.
// Shared rows are padded by 16 bytes, which makes every ldmatrix phase hit 8 distinct bank groups.
// GEGLU (kEpiGeglu, linear_geglu; instances with kGeglu only): the B loader stages weight rows through
// geglu_weight_row (gemm_tc_layout.h), so each lane's accumulator tiles 2j / 2j + 1 are the value / gate of
// the same output columns; the epilogue writes (v + b[c]) * gelu_erf(g + b[C + c]), rounded once. Split-K
// stores the partials at their weight-row column and a second kernel sums both halves, then applies it.
#include <algorithm>

#include "../common.cuh"
#include "gemm_tc.cuh"
#include "gemm_tc_layout.h"
#include "mma_sm80.cuh"

namespace l2d::cuda {
namespace {

using namespace tc;
using namespace ptx;

// Columns n and n + 1 of one output row (row: C's row, res: the residual's row or null): v (the
// accumulators + the per-row bias) + the per-column bias + the residual, rounded once to fp16; pair_ok:
// half2 accesses are aligned (n is always even).
__device__ __forceinline__ void store_pair(const GemmParams& p, int z, __half* row, const __half* res, int64_t n,
                                           float v0, float v1, bool pair_ok) {
  const int64_t N = p.N;
  const bool pair = pair_ok && n + 1 < N;
  if (p.bias_mode == kBiasPerN) {
    const __half* bias = static_cast<const __half*>(p.bias) + z * p.bias_bs;
    if (n < N) v0 += __half2float(bias[n]);
    if (n + 1 < N) v1 += __half2float(bias[n + 1]);
  }
  if (res) {
    if (pair) {
      const float2 r = __half22float2(*reinterpret_cast<const __half2*>(res + n));
      v0 += r.x;
      v1 += r.y;
    } else {
      if (n < N) v0 += __half2float(res[n]);
      if (n + 1 < N) v1 += __half2float(res[n + 1]);
    }
  }
  if (pair) {
    *reinterpret_cast<__half2*>(row + n) = __floats2half2_rn(v0, v1);
  } else {
    if (n < N) row[n] = __float2half_rn(v0);
    if (n + 1 < N) row[n + 1] = __float2half_rn(v1);
  }
}

// The GELU of diffusers' GEGLU (the same formula as the geglu kernel of elementwise.cu).
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

template <int BN, int BMODE, bool kGeglu>
__global__ void __launch_bounds__(THREADS, 2)
    gemm_tc_kernel(const GemmParams p, int splits, int kt_per_split, float* __restrict__ ws) {
  static_assert(!kGeglu || BMODE == kGemmB_NK, "GEGLU takes a [2C, K] weight");
  using G = Geo<BN>;
  constexpr bool kIm2col = BMODE == kGemmB_Im2col;
  constexpr bool kNK = BMODE == kGemmB_NK;
  constexpr int LDB = kNK ? G::LDB_NK : G::LDB_KN;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* smem = reinterpret_cast<__half*>(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / G::WARPS_N, wn = warp % G::WARPS_N;
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t n0 = int64_t(blockIdx.x) * BN, m0 = int64_t(blockIdx.y) * BM;
  const int z = int(blockIdx.z) / splits, split = int(blockIdx.z) % splits;
  const __half* A = static_cast<const __half*>(p.A) + z * p.a_bs;
  const __half* B = static_cast<const __half*>(p.B) + z * p.b_bs;

  const int KT = int((K + BK - 1) / BK);
  int kt_begin, ntiles;
  split_range(split, kt_per_split, KT, kt_begin, ntiles);

  auto sA = [&](int slot) { return smem + slot * G::STAGE_ELEMS; };
  auto sB = [&](int slot) { return smem + slot * G::STAGE_ELEMS + G::A_ELEMS; };

  // ---- loaders ----
  auto load_a = [&](int slot, int64_t k0) {
    __half* dst = sA(slot);
#pragma unroll
    for (int i = 0; i < BM * BK / 8 / THREADS; ++i) {
      int r, col;
      chunk_pos<BK>(tid + i * THREADS, r, col);
      const int64_t gm = m0 + r, gk = k0 + col;
      const bool ok = gm < M && gk < K;
      cp_async16(dst + r * G::LDA + col, ok ? A + gm * p.lda + gk : A, ok);
    }
  };
  auto load_b_dense = [&](int slot, int64_t k0) {
    __half* dst = sB(slot);
    if constexpr (kNK) {  // B(k, n) = B[n * ldb + k]: stage [BN][BK]
#pragma unroll
      for (int i = 0; i < BN * BK / 8 / THREADS; ++i) {
        int r, col;
        chunk_pos<BK>(tid + i * THREADS, r, col);
        const int64_t gk = k0 + col;
        int64_t gn = n0 + r;
        bool ok = gn < N && gk < K;
        if constexpr (kGeglu) {  // value rows, then the gate rows of the same 8 output columns
          gn = geglu_weight_row(r, n0, p.geglu_c);
          ok = geglu_out_col(r, n0) < p.geglu_c && gk < K;
        }
        cp_async16(dst + r * LDB + col, ok ? B + gn * p.ldb + gk : B, ok);
      }
    } else {  // B(k, n) = B[k * ldb + n]: stage [BK][BN]
#pragma unroll
      for (int i = 0; i < BN * BK / 8 / THREADS; ++i) {
        int r, col;
        chunk_pos<BN>(tid + i * THREADS, r, col);
        const int64_t gk = k0 + r, gn = n0 + col;
        const bool ok = gk < K && gn < N;
        cp_async16(dst + r * LDB + col, ok ? B + gk * p.ldb + gn : B, ok);
      }
    }
  };

  // im2col state: this thread's output pixel and k walker.
  const int g_col = tid % BN, g_row0 = tid / BN;
  bool g_nvalid = false;
  int g_iy0 = 0, g_ix0 = 0;  // 32-bit (image coordinates; conv2d checks the plane fits int32): 64-bit ones
                             // made the 128-wide instance spill on sm_90
  Im2colWalker walker{0, 0, 0};
  const ConvGeo cg{p.conv_C, p.conv_H, p.conv_W, p.conv_KH, p.conv_KW, p.conv_sh, p.conv_sw, p.conv_pt, p.conv_pl,
                   p.conv_Wo};
  __half gather_regs[kIm2col ? G::GATHER : 1];
  if constexpr (kIm2col) {
    const int64_t n = n0 + g_col;
    g_nvalid = n < N;
    const int64_t oy = n / p.conv_Wo, ox = n - oy * p.conv_Wo;
    g_iy0 = int(oy) * p.conv_sh - p.conv_pt;
    g_ix0 = int(ox) * p.conv_sw - p.conv_pl;
    walker.init(int64_t(kt_begin) * BK + g_row0, cg);
  }
  // Gathers this thread's elements of the slice starting at k0 (the walker is already there).
  auto gather = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < G::GATHER; ++i) {
      const int64_t k = k0 + g_row0 + i * G::KSTEP;
      const int64_t off = walker.offset(g_iy0, g_ix0, cg);
      gather_regs[i] = g_nvalid && k < K && off >= 0 ? __ldg(B + off) : __float2half_rn(0.f);
      walker.advance(G::KSTEP, cg);
    }
  };
  auto store_gathered = [&](int slot) {
    __half* dst = sB(slot);
#pragma unroll
    for (int i = 0; i < G::GATHER; ++i) dst[(g_row0 + i * G::KSTEP) * LDB + g_col] = gather_regs[i];
  };

  auto load_tile = [&](int slot, int t) {  // t: tile index within this split
    const int64_t k0 = int64_t(kt_begin + t) * BK;
    load_a(slot, k0);
    if constexpr (kIm2col) gather(k0);
    else load_b_dense(slot, k0);
  };

  float acc[G::MI][G::NI][4];
#pragma unroll
  for (int i = 0; i < G::MI; ++i)
#pragma unroll
    for (int j = 0; j < G::NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  // ---- prologue: slices 0 .. STAGES-2 in flight ----
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ntiles) {
      load_tile(s, s);
      if constexpr (kIm2col) store_gathered(s);
    }
    cp_async_commit();
  }

  // ---- main loop ----
  for (int t = 0; t < ntiles; ++t) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // slice t has landed; every warp is done with slice t-1's buffer
    const int load_t = t + STAGES - 1, load_slot = load_t % STAGES;
    const bool do_load = load_t < ntiles;
    if (do_load) load_tile(load_slot, load_t);
    cp_async_commit();

    const __half* a_s = sA(t % STAGES);
    const __half* b_s = sB(t % STAGES);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned af[G::MI][4], bf[G::NI][2];
#pragma unroll
      for (int i = 0; i < G::MI; ++i)
        ldmatrix_x4(af[i], a_s + a_ldsm_offset<BN>(wm, i, lane, kk));
#pragma unroll
      for (int j = 0; j < G::NI / 2; ++j) {
        unsigned r[4];
        if constexpr (kNK) ldmatrix_x4(r, b_s + b_nk_ldsm_offset<BN>(wn, j, lane, kk));
        else ldmatrix_x4_trans(r, b_s + b_kn_ldsm_offset<BN>(wn, j, lane, kk));
        bf[2 * j][0] = r[0];
        bf[2 * j][1] = r[1];
        bf[2 * j + 1][0] = r[2];
        bf[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < G::MI; ++i)
#pragma unroll
        for (int j = 0; j < G::NI; ++j) mma16816(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
    if constexpr (kIm2col)
      if (do_load) store_gathered(load_slot);  // read STAGES-1 iterations later, after their syncs
  }
  cp_async_wait<0>();

  // ---- epilogue (acc_pos: element e of acc[i][j] is tile (row, col); e = 0/1 and 2/3 are column pairs) ----
  // Hands each in-range row m, with the per-row bias bm, and each column pair (n, n + 1) of this thread's
  // accumulators to store(m, n, v0, v1, bm). The store is chosen outside the loops (two instantiations).
  auto for_each_pair = [&](bool row_bias, auto&& store) {
#pragma unroll
    for (int i = 0; i < G::MI; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        int tr, tc0;
        acc_pos<BN>(wm, wn, i, 0, lane, 2 * h, tr, tc0);
        const int64_t m = m0 + tr;
        if (m >= M) continue;
        const float bm = row_bias ? __half2float(static_cast<const __half*>(p.bias)[z * p.bias_bs + m]) : 0.f;
#pragma unroll
        for (int j = 0; j < G::NI; ++j) {
          int r_, c_;
          acc_pos<BN>(wm, wn, i, j, lane, 2 * h, r_, c_);
          store(m, n0 + c_, acc[i][j][2 * h], acc[i][j][2 * h + 1], bm);
        }
      }
  };
  if constexpr (kGeglu) {
    const int64_t Cg = p.geglu_c;
    const __half* bias = p.bias_mode == kBiasPerN ? static_cast<const __half*>(p.bias) : nullptr;
    if (splits == 1) {  // (value + bias) * gelu_erf(gate + bias), one rounding to fp16
      __half* Y = static_cast<__half*>(p.C) + z * p.c_bs;
      const bool pair_ok = (p.ldc % 2 == 0) && (p.c_bs % 2 == 0) && (reinterpret_cast<uintptr_t>(p.C) % 4 == 0);
#pragma unroll
      for (int i = 0; i < G::MI; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int j = 0; j < G::NI / 2; ++j) {
            int tr, tc;
            acc_pos<BN>(wm, wn, i, 2 * j, lane, 2 * h, tr, tc);
            const int64_t m = m0 + tr, c = geglu_out_col(tc, n0);  // c even; c + 1 < Cg when c < Cg (Cg % 8 == 0)
            if (m >= M || c >= Cg) continue;
            float v0 = acc[i][2 * j][2 * h], v1 = acc[i][2 * j][2 * h + 1];
            float g0 = acc[i][2 * j + 1][2 * h], g1 = acc[i][2 * j + 1][2 * h + 1];
            if (bias) {
              v0 += __half2float(bias[c]);
              v1 += __half2float(bias[c + 1]);
              g0 += __half2float(bias[Cg + c]);
              g1 += __half2float(bias[Cg + c + 1]);
            }
            __half* row = Y + m * p.ldc;
            const float y0 = v0 * gelu_erf(g0), y1 = v1 * gelu_erf(g1);
            if (pair_ok) {
              *reinterpret_cast<__half2*>(row + c) = __floats2half2_rn(y0, y1);
            } else {
              row[c] = __float2half_rn(y0);
              row[c + 1] = __float2half_rn(y1);
            }
          }
    } else {
      // Partials at their weight-row column (value c, gate Cg + c) of ws[split][z] [M, N = 2 Cg]: every
      // column is some CTA's staged row, so the workspace is written in full.
      float* W = ws + ((int64_t(split) * p.batch + z) * M) * N;
#pragma unroll
      for (int i = 0; i < G::MI; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int j = 0; j < G::NI; ++j) {
            int tr, tc;
            acc_pos<BN>(wm, wn, i, j, lane, 2 * h, tr, tc);
            const int64_t m = m0 + tr;
            if (m >= M || geglu_out_col(tc, n0) >= Cg) continue;
            float* out = W + m * N + geglu_weight_row(tc, n0, Cg);
            out[0] = acc[i][j][2 * h];
            out[1] = acc[i][j][2 * h + 1];
          }
    }
  } else if (splits == 1) {  // + bias, + residual, one rounding to fp16
    __half* C = static_cast<__half*>(p.C) + z * p.c_bs;
    // The residual is compiled into the NK (Linear weight: linear_add) and im2col (conv2d_fused: the
    // resnet's skip) instances only; the extra registers would make the 128-wide KN instance spill.
    const __half* R = (kNK || kIm2col) && p.residual ? static_cast<const __half*>(p.residual) + z * p.c_bs : nullptr;
    const bool pair_ok = (p.ldc % 2 == 0) && (p.c_bs % 2 == 0) && (reinterpret_cast<uintptr_t>(p.C) % 4 == 0) &&
                         (reinterpret_cast<uintptr_t>(p.residual) % 4 == 0);
    for_each_pair(p.bias_mode == kBiasPerM, [&](int64_t m, int64_t n, float a0, float a1, float bm) {
      store_pair(p, z, C + m * p.ldc, R ? R + m * p.ldc : nullptr, n, a0 + bm, a1 + bm, pair_ok);
    });
  } else {
    // Partials of split s for batch z: ws[((s * batch + z) * M + m) * N + n], written in full (zeros
    // included) so the reduction never reads stale memory.
    float* W = ws + ((int64_t(split) * p.batch + z) * M) * N;
    for_each_pair(false, [&](int64_t m, int64_t n, float a0, float a1, float) {
      if (n < N) W[m * N + n] = a0;
      if (n + 1 < N) W[m * N + n + 1] = a1;
    });
  }
}

// C[z][m, n] = sum over splits (in order) + bias + residual, one thread per output element.
__global__ void splitk_reduce_kernel(const GemmParams p, int splits, const float* __restrict__ ws) {
  const int64_t M = p.M, N = p.N, total = int64_t(p.batch) * M * N;
  __half* C = static_cast<__half*>(p.C);
  const __half* bias = static_cast<const __half*>(p.bias);
  const __half* R = static_cast<const __half*>(p.residual);
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx % N, m = (idx / N) % M, z = idx / (M * N);
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += ws[int64_t(s) * total + idx];
    if (p.bias_mode == kBiasPerM) v += __half2float(bias[z * p.bias_bs + m]);
    else if (p.bias_mode == kBiasPerN) v += __half2float(bias[z * p.bias_bs + n]);
    if (R) v += __half2float(R[z * p.c_bs + m * p.ldc + n]);
    C[z * p.c_bs + m * p.ldc + n] = __float2half_rn(v);
  }
}

// y[z][m, c] = GEGLU of the split sums (value at column c, gate at Cg + c, each in split order) + bias.
__global__ void splitk_reduce_geglu_kernel(const GemmParams p, int splits, const float* __restrict__ ws) {
  const int64_t M = p.M, N = p.N, Cg = p.geglu_c, total = int64_t(p.batch) * M * N, outs = int64_t(p.batch) * M * Cg;
  __half* Y = static_cast<__half*>(p.C);
  const __half* bias = p.bias_mode == kBiasPerN ? static_cast<const __half*>(p.bias) : nullptr;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < outs;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = idx % Cg, zm = idx / Cg, m = zm % M, z = zm / M;
    const float* part = ws + zm * N;  // row (z, m) of split 0
    float v = 0.f, g = 0.f;
    for (int s = 0; s < splits; ++s) {
      v += part[int64_t(s) * total + c];
      g += part[int64_t(s) * total + Cg + c];
    }
    if (bias) {
      v += __half2float(bias[c]);
      g += __half2float(bias[Cg + c]);
    }
    Y[z * p.c_bs + m * p.ldc + c] = __float2half_rn(v * gelu_erf(g));
  }
}

template <int BN, int BMODE, bool kGeglu = false>
void launch(const GemmParams& p, const TcPlan& plan, float* ws, cudaStream_t s) {
  using G = Geo<BN>;
  auto kernel = gemm_tc_kernel<BN, BMODE, kGeglu>;
  // Above 48 KiB of dynamic shared memory needs an opt-in, once per device and kernel.
  static bool opted_in[64] = {};  // (a data race here only repeats an idempotent call)
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64 || !opted_in[dev]) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(G::SMEM_BYTES)));
    if (dev >= 0 && dev < 64) opted_in[dev] = true;
  }
  const dim3 grid(unsigned((p.N + BN - 1) / BN), unsigned((p.M + BM - 1) / BM), unsigned(p.batch * plan.splits));
  kernel<<<grid, THREADS, G::SMEM_BYTES, s>>>(p, plan.splits, plan.kt_per, ws);
  CUDA_CHECK_LAUNCH();
}

template <int BN>
void launch_mode(const GemmParams& p, const TcPlan& plan, float* ws, cudaStream_t s) {
  if (p.epilogue == kEpiGeglu) launch<BN, kGemmB_NK, true>(p, plan, ws, s);
  else if (p.b_mode == kGemmB_KN) launch<BN, kGemmB_KN>(p, plan, ws, s);
  else if (p.b_mode == kGemmB_NK) launch<BN, kGemmB_NK>(p, plan, ws, s);
  else launch<BN, kGemmB_Im2col>(p, plan, ws, s);
}

bool aligned16(const void* ptr, int64_t ld, int64_t bs) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % 8 == 0 && bs % 8 == 0;
}

}  // namespace

bool gemm_tc_supported(const GemmParams& p) {
  // Grid limits (y: row tiles, z: batch x splits): a larger problem runs another path instead of failing.
  if (CEIL_DIV(p.M, int64_t(BM)) > 65535 || p.batch > 65535) return false;
  if (p.epilogue == kEpiGeglu) {
    // linear_geglu: a [2C, K] weight, a per-column bias or none, no residual; C % 8 == 0 (the row map
    // stages value / gate groups of 8 rows; the epilogue stores column pairs).
    if (p.trans_a || p.b_mode != kGemmB_NK || p.residual || p.bias_mode == kBiasPerM || p.M <= 0 || p.K <= 0 ||
        p.batch <= 0 || p.geglu_c <= 0 || p.geglu_c % 8 != 0 || p.N != 2 * p.geglu_c)
      return false;
    return aligned16(p.A, p.lda, p.a_bs) && p.K % 8 == 0 && aligned16(p.B, p.ldb, p.b_bs);
  }
  if (p.trans_a || p.epilogue != kEpiDense || p.M <= 0 || p.N <= 0 || p.K <= 0 || p.batch <= 0) return false;
  if (p.residual && p.b_mode == kGemmB_KN) return false;  // see the epilogue
  if (!aligned16(p.A, p.lda, p.a_bs) || p.K % 8 != 0) return false;
  if (p.b_mode == kGemmB_KN) return aligned16(p.B, p.ldb, p.b_bs) && p.N % 8 == 0;
  if (p.b_mode == kGemmB_NK) return aligned16(p.B, p.ldb, p.b_bs);
  return p.b_mode == kGemmB_Im2col && p.conv_KH >= 1 && p.conv_KW >= 1;
}

TcPlan gemm_tc_plan(const GemmParams& p) {
  const SplitPlan sp = split_plan(p.M, p.N, p.K, p.batch, device_sm_count());  // per device, cached
  TcPlan plan;
  plan.bn = sp.bn;
  plan.splits = sp.splits;
  plan.kt_per = sp.kt_per;
  plan.workspace_floats = plan.splits > 1 ? int64_t(plan.splits) * p.batch * p.M * p.N : 0;
  return plan;
}

void gemm_tc_cuda(const GemmParams& p, const TcPlan& plan, float* workspace, cudaStream_t stream) {
  L2D_ASSERT(gemm_tc_supported(p) && plan.splits >= 1 && (plan.splits == 1 || workspace));
  L2D_ASSERT(int64_t(p.batch) * plan.splits <= 65535 && CEIL_DIV(p.M, int64_t(BM)) <= 65535);
  if (plan.bn == 64) launch_mode<64>(p, plan, workspace, stream);
  else launch_mode<128>(p, plan, workspace, stream);
  if (plan.splits > 1) {
    const int64_t total = int64_t(p.batch) * p.M * p.N;
    const int64_t outs = p.epilogue == kEpiGeglu ? int64_t(p.batch) * p.M * p.geglu_c : total;
    const int blocks = int(std::min<int64_t>(CEIL_DIV(outs, int64_t(256)), 65535));
    if (p.epilogue == kEpiGeglu) splitk_reduce_geglu_kernel<<<blocks, 256, 0, stream>>>(p, plan.splits, workspace);
    else splitk_reduce_kernel<<<blocks, 256, 0, stream>>>(p, plan.splits, workspace);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace l2d::cuda
