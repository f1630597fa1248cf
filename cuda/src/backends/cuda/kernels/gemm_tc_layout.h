// gemm_tc_layout.h: every index formula of the own tensor-core GEMM (gemm_tc.cu) -- tile geometry,
// which global chunk each thread copies where, which shared-memory row each lane hands to ldmatrix,
// where each accumulator lands, and the im2col walker -- as plain host+device functions, so that a
// CPU test (tests/test_gemm_tc_layout.cpp) can replay one CTA's data flow through an emulation of
// ldmatrix / mma.sync and check it against a plain matrix product. No CUDA headers here.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define L2D_HD __host__ __device__ __forceinline__
#else
#define L2D_HD inline
#endif

namespace l2d::cuda::tc {

constexpr int BM = 128, BK = 32, THREADS = 256, STAGES = 3, PAD = 8;

// Per-BN geometry: BN = 128 -> 2 x 4 warps of 64 x 32; BN = 64 -> 4 x 2 warps of 32 x 32.
template <int BN>
struct Geo {
  static constexpr int WARPS_N = BN == 128 ? 4 : 2;
  static constexpr int WARPS_M = 8 / WARPS_N;
  static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
  static constexpr int MI = WTM / 16, NI = WTN / 8;
  static constexpr int LDA = BK + PAD;
  static constexpr int A_ELEMS = BM * LDA;
  static constexpr int LDB_KN = BN + PAD;  // B staged k-major: [BK][BN]
  static constexpr int LDB_NK = BK + PAD;  // B staged n-major: [BN][BK]
  static constexpr int B_ELEMS = BK * LDB_KN > BN * LDB_NK ? BK * LDB_KN : BN * LDB_NK;
  static constexpr int STAGE_ELEMS = A_ELEMS + B_ELEMS;
  static constexpr size_t SMEM_BYTES = size_t(STAGES) * STAGE_ELEMS * 2;  // fp16 elements
  // im2col gather: thread t owns column t % BN and rows t / BN + i * KSTEP.
  static constexpr int KSTEP = THREADS / BN, GATHER = BK / KSTEP;
  static_assert(NI % 2 == 0 && MI >= 1 && THREADS % BN == 0 && BK % KSTEP == 0, "tile geometry");
  static_assert((BM * BK / 8) % THREADS == 0 && (BN * BK / 8) % THREADS == 0, "chunk split");
};

// ---- cp.async chunks (8 fp16 = 16 bytes). Chunk c of a [rows][cols] staging (cols contiguous). ----
template <int COLS>
L2D_HD void chunk_pos(int c, int& row, int& col) {
  row = c / (COLS / 8);
  col = (c % (COLS / 8)) * 8;
}

// ---- ldmatrix.x4 addresses: the element offset that `lane` hands over ----
// A stage [BM][LDA] (k contiguous), warp row wm, 16-row fragment i, k offset kk: matrices 0..3 =
// (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3 of mma.
template <int BN>
L2D_HD int a_ldsm_offset(int wm, int i, int lane, int kk) {
  using G = Geo<BN>;
  return (wm * G::WTM + i * 16 + (lane & 15)) * G::LDA + kk + (lane >> 4) * 8;
}
// B staged [BN][LDB_NK] (k contiguous), non-transposed ldmatrix over n-tiles 2j, 2j+1: matrices =
// (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of tile 2j, then 2j+1.
template <int BN>
L2D_HD int b_nk_ldsm_offset(int wn, int j, int lane, int kk) {
  using G = Geo<BN>;
  return (wn * G::WTN + j * 16 + (lane >> 4) * 8 + (lane & 7)) * G::LDB_NK + kk + ((lane >> 3) & 1) * 8;
}
// B staged [BK][LDB_KN] (n contiguous), transposed ldmatrix: matrices = (k 0-7, n 0-7), (k 8-15,
// n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15), delivered transposed = the same b0/b1 order.
template <int BN>
L2D_HD int b_kn_ldsm_offset(int wn, int j, int lane, int kk) {
  using G = Geo<BN>;
  return (kk + ((lane >> 3) & 1) * 8 + (lane & 7)) * G::LDB_KN + wn * G::WTN + j * 16 + (lane >> 4) * 8;
}

// ---- accumulators: acc[i][j][e] of `lane` in warp (wm, wn) is C(row, col) of the CTA tile ----
template <int BN>
L2D_HD void acc_pos(int wm, int wn, int i, int j, int lane, int e, int& row, int& col) {
  using G = Geo<BN>;
  row = wm * G::WTM + i * 16 + (lane >> 2) + (e >> 1) * 8;
  col = wn * G::WTN + j * 8 + (lane & 3) * 2 + (e & 1);
}

// ---- GEGLU epilogue (linear_geglu: weight [2C, K], value rows 0..C-1, gate rows C..2C-1) ----
// The CTA whose tile starts at n0 (a multiple of BN in the GEMM's 2C-wide space) makes output columns
// n0/2 .. n0/2 + BN/2 - 1. In every group of 16 staged B rows it stages 8 value rows, then the gate rows
// of the same 8 output columns; b_nk_ldsm_offset hands rows 16j..16j+7 to n-tile 2j and rows 16j+8..16j+15
// to n-tile 2j+1, so acc[i][2j] (value) and acc[i][2j+1] (gate) of a lane hold the same output columns.
// Tile column / staged row r -> the output column it belongs to (>= C: past the edge, zero-filled).
L2D_HD int64_t geglu_out_col(int r, int64_t n0) { return n0 / 2 + (r >> 4) * 8 + (r & 7); }
// Staged row r -> the weight row it loads (value c or gate C + c); also where a split-K partial of tile
// column r is stored in the [M, 2C] workspace.
L2D_HD int64_t geglu_weight_row(int r, int64_t n0, int64_t C) { return (r & 8 ? C : 0) + geglu_out_col(r, n0); }

// ---- split-K ----
// How a problem is cut: tile width bn (64 when N fits, else 128), splits of K (1 = none) and the
// slices per split. Fewer tiles than SMs: split K so that about two CTAs per SM run, each over >= 8
// slices (256 of K), at most 16 ways (the workspace and the reduction grow with the split count);
// recounted so that no split is empty. Host only.
struct SplitPlan {
  int bn = 128, splits = 1, kt_per = 1;
};
inline SplitPlan split_plan(int64_t M, int64_t N, int64_t K, int64_t batch, int sms) {
  SplitPlan s;
  s.bn = N <= 64 ? 64 : 128;
  const int64_t tiles = ((M + BM - 1) / BM) * ((N + s.bn - 1) / s.bn) * batch;
  const int64_t KT = (K + BK - 1) / BK;
  int64_t splits = 1;
  if (tiles < sms) {
    splits = (2 * int64_t(sms) + tiles - 1) / tiles;
    if (splits > KT / 8) splits = KT / 8;
    if (splits > 16) splits = 16;
    if (splits > 65535 / batch) splits = 65535 / batch;
    if (splits < 1) splits = 1;
  }
  const int64_t per = (KT + splits - 1) / splits;
  s.kt_per = int(per);
  s.splits = int((KT + per - 1) / per);
  return s;
}
// The slices [begin, begin + count) of split `split`.
L2D_HD void split_range(int split, int kt_per, int KT, int& begin, int& count) {
  begin = split * kt_per;
  const int end = begin + kt_per < KT ? begin + kt_per : KT;
  count = end > begin ? end - begin : 0;
}

// ---- im2col ----
// Geometry of an NCHW convolution seen as B(k, n) = x[c, oy*sh - pt + kh, ox*sw - pl + kw] with
// k = (c*KH + kh)*KW + kw and n = oy*Wo + ox (zero outside the image).
struct ConvGeo {
  int C, H, W, KH, KW, sh, sw, pt, pl, Wo;
};
// Walks one thread's k sequence (k, k + step, ...) as (c, kh, kw) without divisions.
struct Im2colWalker {
  int64_t c_off;  // c * H * W
  int kh, kw;
  L2D_HD void init(int64_t k, const ConvGeo& g) {
    const int khw = g.KH * g.KW;
    const int64_t c = k / khw;
    const int r = int(k - c * khw);
    kh = r / g.KW;
    kw = r - kh * g.KW;
    c_off = c * int64_t(g.H) * g.W;
  }
  L2D_HD void advance(int step, const ConvGeo& g) {
    kw += step;
    while (kw >= g.KW) {
      kw -= g.KW;
      if (++kh == g.KH) {
        kh = 0;
        c_off += int64_t(g.H) * g.W;
      }
    }
  }
  // Offset into the image of pixel (iy0, ix0)'s tap, or -1 outside it.
  L2D_HD int64_t offset(int64_t iy0, int64_t ix0, const ConvGeo& g) const {
    const int64_t iy = iy0 + kh, ix = ix0 + kw;
    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) return -1;
    return c_off + iy * g.W + ix;
  }
};

}  // namespace l2d::cuda::tc
