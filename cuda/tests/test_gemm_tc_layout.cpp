// test_gemm_tc_layout: replays the own tensor-core GEMM's data flow on the CPU with the SAME index
// functions the kernel uses (src/backends/cuda/kernels/gemm_tc_layout.h), through an emulation of
// the PTX instructions as the PTX ISA specifies them (ldmatrix .x4 / .x4.trans fragment delivery,
// mma.m16n8k16.row.col register layouts), and checks:
//   - the cp.async chunks of the A and B stagings cover each tile element exactly once;
//   - one BK slice through ldmatrix + mma lands every C element of the 128 x BN tile exactly once,
//     equal to the plain product (integer data: exact), for BN = 128 and 64, B staged n- or k-major;
//   - split-K plans cut K into non-empty, covering ranges of >= 8 slices and fill the GPU at the
//     UNet's 16x16 and 8x8 levels;
//   - the im2col walker gathers x[c, iy, ix] (or zero) for every (k, n) over consecutive slices and
//     from split-K starts, for strided, padded and asymmetric geometries.
//   - linear_geglu's row map (geglu_weight_row): every CTA of SD1.5's feed-forward GEMMs stages each weight
//     row of its output columns once, and each lane's value / gate accumulators (n-tiles 2j / 2j + 1) hold
//     the same output elements, equal to the plain products (and map to the split-K partial columns).
// Plain C++ (no GPU): runs in every build, so a wrong lane formula fails on the CPU machines.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backends/cuda/kernels/gemm_tc_layout.h"
#include "cpu_check.h"

using namespace l2d::cuda::tc;

namespace {

uint64_t rng_state = 12345;
int small_int() {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return int((rng_state >> 33) % 9) - 4;
}

// A register of two 16-bit lanes (we carry floats: the data are small integers).
struct Reg {
  float lo, hi;
};

// ldmatrix.x4: lane 8q + r supplies the address of row r of matrix q (8 consecutive elements).
// Non-transposed: thread t gets (row t/4, cols 2(t%4), 2(t%4)+1) of each matrix; .trans: the same of
// the transposed matrix, i.e. (rows 2(t%4), 2(t%4)+1 of column t/4).
void ldmatrix_x4(const std::vector<float>& smem, const int (&addr)[32], bool trans, Reg (&out)[32][4]) {
  for (int t = 0; t < 32; ++t)
    for (int q = 0; q < 4; ++q) {
      auto at = [&](int row, int col) { return smem[size_t(addr[8 * q + row] + col)]; };
      if (!trans) out[t][q] = {at(t / 4, 2 * (t % 4)), at(t / 4, 2 * (t % 4) + 1)};
      else out[t][q] = {at(2 * (t % 4), t / 4), at(2 * (t % 4) + 1, t / 4)};
    }
}

// mma.m16n8k16.row.col: with g = lane/4, c = lane%4: a0 = A[g][2c..2c+1], a1 = A[g+8][2c..],
// a2 = A[g][2c+8..], a3 = A[g+8][2c+8..]; b0 = B[2c..2c+1][g], b1 = B[2c+8..][g];
// d0,d1 = D[g][2c..2c+1], d2,d3 = D[g+8][2c..2c+1].
void mma16816(float (&d)[32][4], const Reg (&a)[32][4], const Reg (&b)[32][2]) {
  float A[16][16], B[16][8], D[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, c = l % 4;
    const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * c, 2 * c, 2 * c + 8, 2 * c + 8};
    for (int r = 0; r < 4; ++r) {
      A[rows[r]][cols[r]] = a[l][r].lo;
      A[rows[r]][cols[r] + 1] = a[l][r].hi;
    }
    B[2 * c][g] = b[l][0].lo;
    B[2 * c + 1][g] = b[l][0].hi;
    B[2 * c + 8][g] = b[l][1].lo;
    B[2 * c + 9][g] = b[l][1].hi;
    D[g][2 * c] = d[l][0];
    D[g][2 * c + 1] = d[l][1];
    D[g + 8][2 * c] = d[l][2];
    D[g + 8][2 * c + 1] = d[l][3];
  }
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 16; ++k) D[m][n] += A[m][k] * B[k][n];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, c = l % 4;
    d[l][0] = D[g][2 * c];
    d[l][1] = D[g][2 * c + 1];
    d[l][2] = D[g + 8][2 * c];
    d[l][3] = D[g + 8][2 * c + 1];
  }
}

// One warp's math over a BK slice of staged A and B ([BN][LDB_NK] when b_nk, else [BK][LDB_KN]): both
// k16 steps through the emulated ldmatrix + mma, with the kernel's offsets and register assignment.
template <int BN>
void warp_math(const std::vector<float>& sA, const std::vector<float>& sB, bool b_nk, int wm, int wn,
               float (&acc)[Geo<BN>::MI][Geo<BN>::NI][32][4]) {
  using G = Geo<BN>;
  for (auto& a : acc)
    for (auto& b : a)
      for (auto& l : b)
        for (float& e : l) e = 0.f;
  for (int kk = 0; kk < BK; kk += 16) {
    Reg af[G::MI][32][4], bf[G::NI][32][2];
    for (int i = 0; i < G::MI; ++i) {
      int addr[32];
      for (int l = 0; l < 32; ++l) addr[l] = a_ldsm_offset<BN>(wm, i, l, kk);
      ldmatrix_x4(sA, addr, false, af[i]);
    }
    for (int j = 0; j < G::NI / 2; ++j) {
      int addr[32];
      for (int l = 0; l < 32; ++l) addr[l] = b_nk ? b_nk_ldsm_offset<BN>(wn, j, l, kk) : b_kn_ldsm_offset<BN>(wn, j, l, kk);
      Reg r[32][4];
      ldmatrix_x4(sB, addr, !b_nk, r);
      for (int l = 0; l < 32; ++l) {  // the kernel's register assignment
        bf[2 * j][l][0] = r[l][0];
        bf[2 * j][l][1] = r[l][1];
        bf[2 * j + 1][l][0] = r[l][2];
        bf[2 * j + 1][l][1] = r[l][3];
      }
    }
    for (int i = 0; i < G::MI; ++i)
      for (int j = 0; j < G::NI; ++j) mma16816(acc[i][j], af[i], bf[j]);
  }
}

template <int BN>
void check_tile(bool b_nk) {
  using G = Geo<BN>;
  // Global operands of one tile: A [BM][BK], B as (k, n) values.
  std::vector<float> gA(BM * BK), gB(BK * BN);
  for (float& v : gA) v = float(small_int());
  for (float& v : gB) v = float(small_int());
  auto Bv = [&](int k, int n) { return gB[size_t(k * BN + n)]; };

  // ---- staging through the cp.async chunk map ----
  std::vector<float> sA(G::A_ELEMS, 1e9f), sB(G::B_ELEMS, 1e9f);
  std::vector<int> hitA(BM * BK, 0), hitB(BK * BN, 0);
  for (int tid = 0; tid < THREADS; ++tid) {
    for (int i = 0; i < BM * BK / 8 / THREADS; ++i) {
      int r, col;
      chunk_pos<BK>(tid + i * THREADS, r, col);
      for (int e = 0; e < 8; ++e) {
        sA[size_t(r * G::LDA + col + e)] = gA[size_t(r * BK + col + e)];
        ++hitA[size_t(r * BK + col + e)];
      }
    }
    for (int i = 0; i < BN * BK / 8 / THREADS; ++i) {
      int r, col;
      if (b_nk) {  // [BN][BK]: r = n, col = k
        chunk_pos<BK>(tid + i * THREADS, r, col);
        for (int e = 0; e < 8; ++e) {
          sB[size_t(r * G::LDB_NK + col + e)] = Bv(col + e, r);
          ++hitB[size_t((col + e) * BN + r)];
        }
      } else {  // [BK][BN]: r = k, col = n
        chunk_pos<BN>(tid + i * THREADS, r, col);
        for (int e = 0; e < 8; ++e) {
          sB[size_t(r * G::LDB_KN + col + e)] = Bv(r, col + e);
          ++hitB[size_t(r * BN + col + e)];
        }
      }
    }
  }
  for (int i = 0; i < BM * BK; ++i) CHECK(hitA[size_t(i)] == 1, "BN=%d A element %d staged %d times", BN, i, hitA[size_t(i)]);
  for (int i = 0; i < BK * BN; ++i) CHECK(hitB[size_t(i)] == 1, "BN=%d nk=%d B element %d staged %d times", BN, b_nk, i, hitB[size_t(i)]);

  // ---- math: every warp, both k16 steps, through the emulated ldmatrix + mma ----
  std::vector<float> C(BM * BN, 0.f);
  std::vector<int> hitC(BM * BN, 0);
  for (int warp = 0; warp < 8; ++warp) {
    const int wm = warp / G::WARPS_N, wn = warp % G::WARPS_N;
    static float acc[G::MI][G::NI][32][4];
    warp_math<BN>(sA, sB, b_nk, wm, wn, acc);
    for (int i = 0; i < G::MI; ++i)
      for (int j = 0; j < G::NI; ++j)
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 4; ++e) {
            int row, col;
            acc_pos<BN>(wm, wn, i, j, l, e, row, col);
            CHECK(row >= 0 && row < BM && col >= 0 && col < BN, "acc_pos out of the tile");
            if (row < 0 || row >= BM || col < 0 || col >= BN) continue;
            C[size_t(row * BN + col)] = acc[i][j][l][e];
            ++hitC[size_t(row * BN + col)];
          }
  }
  for (int m = 0; m < BM; ++m)
    for (int n = 0; n < BN; ++n) {
      float want = 0.f;
      for (int k = 0; k < BK; ++k) want += gA[size_t(m * BK + k)] * Bv(k, n);
      CHECK(hitC[size_t(m * BN + n)] == 1, "BN=%d nk=%d C(%d,%d) written %d times", BN, b_nk, m, n, hitC[size_t(m * BN + n)]);
      CHECK(C[size_t(m * BN + n)] == want, "BN=%d nk=%d C(%d,%d) = %g, want %g", BN, b_nk, m, n, C[size_t(m * BN + n)], want);
    }
}

// linear_geglu (weight [2C, K]: value rows, then gate rows) over every CTA of the 2C-wide GEMM for one
// BK slice: the cp.async chunks staged through the GEGLU row map load every weight row of the CTA's output
// columns exactly once (columns past C zero-filled), and after the emulated ldmatrix + mma, acc[i][2j] and
// acc[i][2j+1] of every lane hold the value and the gate of the same output element (row, c), equal to the
// plain products with weight rows c and C + c; every output element of the [BM, C] slab is made once, and the
// split-K partial column (geglu_weight_row) of a value / gate accumulator is c / C + c.
template <int BN>
void check_geglu(int64_t C) {
  using G = Geo<BN>;
  std::vector<float> gA(BM * BK), gW(size_t(2 * C) * BK);
  for (float& v : gA) v = float(small_int());
  for (float& v : gW) v = float(small_int());
  std::vector<int> hitW(size_t(2 * C) * BK, 0), hitY(size_t(BM * C), 0);
  std::vector<float> sA(G::A_ELEMS, 1e9f);
  for (int tid = 0; tid < THREADS; ++tid)
    for (int i = 0; i < BM * BK / 8 / THREADS; ++i) {
      int r, col;
      chunk_pos<BK>(tid + i * THREADS, r, col);
      for (int e = 0; e < 8; ++e) sA[size_t(r * G::LDA + col + e)] = gA[size_t(r * BK + col + e)];
    }
  const int64_t ctas = (2 * C + BN - 1) / BN;  // the kernel's grid.x (N = 2C)
  for (int64_t cta = 0; cta < ctas; ++cta) {
    const int64_t n0 = cta * BN;
    std::vector<float> sB(G::B_ELEMS, 1e9f);
    for (int tid = 0; tid < THREADS; ++tid)
      for (int i = 0; i < BN * BK / 8 / THREADS; ++i) {
        int r, col;
        chunk_pos<BK>(tid + i * THREADS, r, col);
        const int64_t out = geglu_out_col(r, n0), wr = geglu_weight_row(r, n0, C);
        CHECK(out >= n0 / 2 && out < n0 / 2 + BN / 2, "geglu BN=%d C=%lld n0=%lld: row %d -> column %lld outside the CTA",
              BN, (long long)C, (long long)n0, r, (long long)out);
        CHECK(wr == ((r & 8) ? C + out : out), "geglu row %d: weight row %lld for column %lld", r, (long long)wr,
              (long long)out);
        const bool ok = out < C;  // the kernel's zero-fill predicate
        for (int e = 0; e < 8; ++e) {
          sB[size_t(r * G::LDB_NK + col + e)] = ok ? gW[size_t(wr * BK + col + e)] : 0.f;
          if (ok) ++hitW[size_t(wr * BK + col + e)];
        }
      }
    for (int warp = 0; warp < 8; ++warp) {
      const int wm = warp / G::WARPS_N, wn = warp % G::WARPS_N;
      static float acc[G::MI][G::NI][32][4];
      warp_math<BN>(sA, sB, true, wm, wn, acc);
      for (int i = 0; i < G::MI; ++i)
        for (int j = 0; j < G::NI / 2; ++j)
          for (int l = 0; l < 32; ++l)
            for (int e = 0; e < 4; ++e) {
              int row, cv, rg, cg;
              acc_pos<BN>(wm, wn, i, 2 * j, l, e, row, cv);
              acc_pos<BN>(wm, wn, i, 2 * j + 1, l, e, rg, cg);
              const int64_t out = geglu_out_col(cv, n0);
              CHECK(rg == row && geglu_out_col(cg, n0) == out, "geglu BN=%d: value (%d, %d) and gate (%d, %d) differ",
                    BN, row, cv, rg, cg);
              CHECK(geglu_weight_row(cv, n0, C) == out && geglu_weight_row(cg, n0, C) == C + out,
                    "geglu split-K columns %lld / %lld for output column %lld", (long long)geglu_weight_row(cv, n0, C),
                    (long long)geglu_weight_row(cg, n0, C), (long long)out);
              const float v = acc[i][2 * j][l][e], g = acc[i][2 * j + 1][l][e];
              if (out >= C) {
                CHECK(v == 0.f && g == 0.f, "geglu column %lld past C=%lld not zero", (long long)out, (long long)C);
                continue;
              }
              float want_v = 0.f, want_g = 0.f;
              for (int k = 0; k < BK; ++k) {
                want_v += gA[size_t(row * BK + k)] * gW[size_t(out * BK + k)];
                want_g += gA[size_t(row * BK + k)] * gW[size_t((C + out) * BK + k)];
              }
              CHECK(v == want_v && g == want_g, "geglu BN=%d C=%lld y(%d, %lld): value %g gate %g, want %g %g", BN,
                    (long long)C, row, (long long)out, v, g, want_v, want_g);
              ++hitY[size_t(row * C + out)];
            }
    }
  }
  for (size_t i = 0; i < hitW.size(); ++i)
    CHECK(hitW[i] == 1, "geglu BN=%d C=%lld weight element %zu staged %d times", BN, (long long)C, i, hitW[i]);
  for (size_t i = 0; i < hitY.size(); ++i)
    CHECK(hitY[i] == 1, "geglu BN=%d C=%lld output %zu made %d times", BN, (long long)C, i, hitY[i]);
}

// The kernel's gather: thread tid owns column tid % BN and rows tid / BN + i * KSTEP of every slice;
// its walker starts at the split's first k and advances KSTEP per element across slices.
template <int BN>
void check_im2col(const ConvGeo& g, int Ho, int kt_begin, int kt_count) {
  using G = Geo<BN>;
  const int64_t K = int64_t(g.C) * g.KH * g.KW, N = int64_t(Ho) * g.Wo;
  std::vector<float> x(size_t(g.C) * g.H * g.W);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i + 1);
  auto direct = [&](int64_t k, int64_t n) -> float {
    if (k >= K || n >= N) return 0.f;
    const int64_t c = k / (g.KH * g.KW), r = k % (g.KH * g.KW), kh = r / g.KW, kw = r % g.KW;
    const int64_t oy = n / g.Wo, ox = n % g.Wo;
    const int64_t iy = oy * g.sh - g.pt + kh, ix = ox * g.sw - g.pl + kw;
    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) return 0.f;
    return x[size_t((c * g.H + iy) * g.W + ix)];
  };
  for (int64_t n0 = 0; n0 < N; n0 += BN)
    for (int tid = 0; tid < THREADS; ++tid) {
      const int col = tid % BN, row0 = tid / BN;
      const int64_t n = n0 + col;
      const bool nvalid = n < N;
      const int64_t oy = n / g.Wo, ox = n - oy * g.Wo;
      const int64_t iy0 = oy * g.sh - g.pt, ix0 = ox * g.sw - g.pl;
      Im2colWalker w{0, 0, 0};
      w.init(int64_t(kt_begin) * BK + row0, g);
      for (int t = 0; t < kt_count; ++t)
        for (int i = 0; i < G::GATHER; ++i) {
          const int64_t k = int64_t(kt_begin + t) * BK + row0 + i * G::KSTEP;
          const int64_t off = w.offset(iy0, ix0, g);
          const float got = nvalid && k < K && off >= 0 ? x[size_t(off)] : 0.f;
          CHECK(got == direct(k, n), "im2col BN=%d C=%d H=%d W=%d k%dx%d s%d: (k=%lld, n=%lld) = %g, want %g", BN, g.C,
                g.H, g.W, g.KH, g.KW, g.sh, (long long)k, (long long)n, got, direct(k, n));
          w.advance(G::KSTEP, g);
        }
    }
}

void check_geometry(int C, int H, int W, int KH, int KW, int s, int pt, int pb, int pl, int pr) {
  const int Ho = (H + pt + pb - KH) / s + 1, Wo = (W + pl + pr - KW) / s + 1;
  const ConvGeo g{C, H, W, KH, KW, s, s, pt, pl, Wo};
  const int KT = int((int64_t(C) * KH * KW + BK - 1) / BK);
  check_im2col<128>(g, Ho, 0, KT);
  check_im2col<64>(g, Ho, 0, KT);
  if (KT > 2) {  // a split-K slice starting mid-way
    check_im2col<128>(g, Ho, KT / 2, KT - KT / 2);
    check_im2col<64>(g, Ho, 1, KT - 1);
  }
}

void check_split(int64_t M, int64_t N, int64_t K, int64_t batch, int sms) {
  const SplitPlan sp = split_plan(M, N, K, batch, sms);
  const int KT = int((K + BK - 1) / BK);
  CHECK(sp.bn == (N <= 64 ? 64 : 128), "bn for N=%lld", (long long)N);
  CHECK(sp.splits >= 1 && sp.splits <= 16 && batch * sp.splits <= 65535, "splits %d", sp.splits);
  int covered = 0;
  for (int s = 0; s < sp.splits; ++s) {
    int begin, count;
    split_range(s, sp.kt_per, KT, begin, count);
    CHECK(count > 0 && begin == covered, "M=%lld N=%lld K=%lld split %d/%d: [%d, +%d) after %d", (long long)M,
          (long long)N, (long long)K, s, sp.splits, begin, count, covered);
    covered = begin + count;
  }
  CHECK(covered == KT, "splits cover %d of %d slices", covered, KT);
  if (sp.splits > 1) CHECK(sp.kt_per >= 8, "a split of %d slices (< 8)", sp.kt_per);
}

}  // namespace

int main() {
  // UNet 3x3 convs per level at T = 2 (M = O, N = H*W, K = 9 C, batch = T) and a few linears, on
  // H100/H200 (132 SMs) and smaller parts; then odd shapes.
  const int64_t convs[][4] = {{320, 4096, 2880, 2}, {640, 1024, 5760, 2}, {1280, 256, 11520, 2}, {1280, 64, 11520, 2},
                              {1280, 64, 23040, 3}, {4, 4096, 2880, 2},   {8192, 320, 320, 1},   {128, 1280, 1280, 1},
                              {2, 1280, 320, 1},    {154, 320, 768, 1},   {577, 768, 3072, 1},   {1, 768, 768, 1}};
  for (int sms : {132, 128, 114, 84, 46})
    for (const auto& c : convs) check_split(c[0], c[1], c[2], c[3], sms);
  for (int64_t K = 8; K <= 20000; K = K * 3 / 2 + 8)
    for (int64_t N : {8, 64, 72, 4096}) check_split(96, N, K, 1, 132);
  // The small levels must fill an H100/H200 (>= one CTA per SM) once split.
  for (const auto& c : {convs[2], convs[3]}) {
    const SplitPlan sp = split_plan(c[0], c[1], c[2], c[3], 132);
    const int64_t ctas = ((c[0] + BM - 1) / BM) * ((c[1] + sp.bn - 1) / sp.bn) * c[3] * sp.splits;
    CHECK(ctas >= 132, "M=%lld N=%lld: %lld CTAs", (long long)c[0], (long long)c[1], (long long)ctas);
  }

  check_tile<128>(false);
  check_tile<128>(true);
  check_tile<64>(false);
  check_tile<64>(true);
  // linear_geglu: SD1.5's feed-forwards (C = 4 * 320, 4 * 640, 4 * 1280) and small C with ragged last CTAs
  // (C % 8 == 0, which the kernel requires; 2C <= 64 takes BN = 64).
  for (int64_t C : {1280, 2560, 5120, 8, 24, 40, 72, 200}) {
    check_geglu<128>(C);
    check_geglu<64>(C);
  }
  // The split plan of the feed-forward GEMMs ([M, 2C], K = C / 4): the motion modules' 128 / 192 rows split K.
  for (const int64_t M : {128, 192, 512, 768, 2048, 8192}) {
    const int64_t C = M <= 768 ? 5120 : M == 2048 ? 2560 : 1280;
    check_split(M, 2 * C, C / 4, 1, 132);
  }
  check_geometry(5, 7, 6, 3, 3, 1, 1, 1, 1, 1);    // 3x3 pad 1, K = 45 (ragged last slice)
  check_geometry(16, 9, 11, 3, 3, 2, 0, 1, 0, 1);  // TF SAME stride 2 (asymmetric)
  check_geometry(8, 12, 10, 1, 1, 2, 0, 0, 0, 0);  // 1x1 stride 2 (KW < KSTEP: the walker wraps twice)
  check_geometry(3, 20, 18, 7, 7, 2, 2, 3, 2, 3);  // MiDaS stem 7x7
  check_geometry(4, 16, 16, 16, 16, 16, 0, 0, 0, 0);  // patch 16 (ViT)
  if (cpu_check::failures) std::printf("test_gemm_tc_layout: %d FAILED\n", cpu_check::failures);
  else std::printf("test_gemm_tc_layout: all ok\n");
  return cpu_check::failures ? 1 : 0;
}
