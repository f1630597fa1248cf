// Tiled GEMM. A block computes a BM x BN tile of C, stepping over K in BK slices staged in shared
// memory. Shared tiles keep the operand's global layout (the contiguous global dim stays
// contiguous), so every dense operand uses one loader with 16-byte vector loads where aligned and
// zero-filled scalar loads at the edges; WMMA fragments pick row/col-major to match. Arbitrary
// M, N, K: everything out of range is zero in shared memory and masked on store.
//   T = __half: 8 or 4 warps, each a (BM/WARPS_M) x (BN/WARPS_N) tile of 16x16x16 WMMA fragments.
//   T = float:  SIMT, each thread a TM x 8 register tile (the fp32 verification path).
// Two tile configs: 128x128 (256 threads) and 64x64 (128 threads) for small problems.
#include <mma.h>

#include <type_traits>

#include "../common.cuh"
#include "gemm.cuh"

namespace l2d::cuda {
namespace {

constexpr int BK = 32;

template <typename T>
__device__ __forceinline__ T zero_val() {
  return from_f<T>(0.f);
}

// Loads a ROWS x COLS tile (COLS = the contiguous global dim) into smem[r * LDS + c].
template <typename T, int ROWS, int COLS, int LDS, int THREADS>
__device__ __forceinline__ void load_tile(T* __restrict__ smem, const T* __restrict__ g, int64_t ldg, int64_t row0,
                                          int64_t rows_total, int64_t col0, int64_t cols_total, bool vec_ok) {
  constexpr int VEC = 16 / int(sizeof(T));
  constexpr int CV = COLS / VEC;
  static_assert(COLS % VEC == 0, "tile width");
  for (int c = threadIdx.x; c < ROWS * CV; c += THREADS) {
    const int r = c / CV, cc = (c % CV) * VEC;
    const int64_t gr = row0 + r, gc = col0 + cc;
    T* dst = smem + r * LDS + cc;
    if (gr < rows_total && vec_ok && gc + VEC <= cols_total) {
      *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(g + gr * ldg + gc));
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v)
        dst[v] = (gr < rows_total && gc + v < cols_total) ? g[gr * ldg + gc + v] : zero_val<T>();
    }
  }
}

// R: this batch's residual (laid out like C) or null; added after the bias, as linear then Add would.
template <typename T>
__device__ __forceinline__ void store_out(const GemmParams& p, T* __restrict__ C, const T* __restrict__ bias,
                                          const T* __restrict__ R, int64_t m, int64_t n, float v) {
  if (p.epilogue == kEpiDense) {
    if (p.bias_mode == kBiasPerN) v += to_f(bias[n]);
    else if (p.bias_mode == kBiasPerM) v += to_f(bias[m]);
    if (R) v += to_f(R[m * p.ldc + n]);
    C[m * p.ldc + n] = from_f<T>(v);
  } else {
    const int64_t k = p.ct_k, o = m / (k * k), ij = m - o * k * k, i = ij / k, j = ij - i * k;
    const int64_t y = n / p.ct_W, x = n - y * p.ct_W;
    if (bias) v += to_f(bias[o]);
    C[((o * p.ct_H + y) * k + i) * (int64_t(p.ct_W) * k) + x * k + j] = from_f<T>(v);
  }
}

template <typename T, int BM, int BN, int WARPS_M, int WARPS_N, bool TA, int BMODE>
static __global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    gemm_kernel(const GemmParams p, bool a_vec, bool b_vec) {
  constexpr int THREADS = WARPS_M * WARPS_N * 32;
  constexpr int PAD = 16 / int(sizeof(T));
  constexpr bool B_NK = BMODE == kGemmB_NK;
  // Shared layouts: A is [BM][BK] (k contiguous) or, transposed, [BK][BM]; B is [BK][BN] or, for
  // NK, [BN][BK].
  constexpr int LDA = TA ? BM + PAD : BK + PAD;
  constexpr int LDB = B_NK ? BK + PAD : BN + PAD;
  constexpr int A_ELEMS = TA ? BK * LDA : BM * LDA;
  constexpr int B_ELEMS = B_NK ? BN * LDB : BK * LDB;
  __shared__ __align__(128) T sA[A_ELEMS];
  __shared__ __align__(128) T sB[B_ELEMS];

  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t m0 = int64_t(blockIdx.x) * BM, n0 = int64_t(blockIdx.y) * BN;
  const int64_t z = blockIdx.z;
  const T* A = static_cast<const T*>(p.A) + z * p.a_bs;
  const T* B = static_cast<const T*>(p.B) + z * p.b_bs;
  T* C = static_cast<T*>(p.C) + z * p.c_bs;
  const T* bias = p.bias ? static_cast<const T*>(p.bias) + z * p.bias_bs : nullptr;
  const T* R = p.residual ? static_cast<const T*>(p.residual) + z * p.c_bs : nullptr;
  const int tid = threadIdx.x;

  // im2col: each thread always gathers the same column n of the B tile.
  static_assert(THREADS % BN == 0, "im2col mapping");
  constexpr int KSTEP = THREADS / BN;
  const int im_nc = tid % BN, im_kr0 = tid / BN;
  int64_t im_iy0 = 0, im_ix0 = 0;
  bool im_nvalid = false;
  if constexpr (BMODE == kGemmB_Im2col) {
    const int64_t n = n0 + im_nc;
    im_nvalid = n < N;
    const int64_t oy = n / p.conv_Wo, ox = n - oy * p.conv_Wo;
    im_iy0 = oy * p.conv_sh - p.conv_pt;
    im_ix0 = ox * p.conv_sw - p.conv_pl;
  }

  constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
  const int warp = tid >> 5, lane = tid & 31;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;

  // ---- accumulators ----
  constexpr bool kHalf = std::is_same_v<T, __half>;
  constexpr int FM = WTM / 16, FN = WTN / 16;
  constexpr int TN = 8, TX = BN / TN, TY = THREADS / TX, TM = BM / TY;
  static_assert(!kHalf || (WTM % 16 == 0 && WTN % 16 == 0), "warp tile");
  static_assert(kHalf || (BN % TN == 0 && THREADS % TX == 0 && BM % TY == 0), "thread tile");
  using namespace nvcuda;
  using LayoutA = std::conditional_t<TA, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<B_NK, wmma::col_major, wmma::row_major>;
  // Unused member of the pair is optimised away.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kHalf ? FM : 1][kHalf ? FN : 1];
  float facc[kHalf ? 1 : TM][kHalf ? 1 : TN];
  const int ty = tid / TX, tx = tid % TX;
  if constexpr (kHalf) {
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  } else {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) facc[i][j] = 0.f;
  }

  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    // ---- stage A ----
    if constexpr (TA) load_tile<T, BK, BM, LDA, THREADS>(sA, A, p.lda, k0, K, m0, M, a_vec);
    else load_tile<T, BM, BK, LDA, THREADS>(sA, A, p.lda, m0, M, k0, K, a_vec);
    // ---- stage B ----
    if constexpr (BMODE == kGemmB_KN) {
      load_tile<T, BK, BN, LDB, THREADS>(sB, B, p.ldb, k0, K, n0, N, b_vec);
    } else if constexpr (BMODE == kGemmB_NK) {
      load_tile<T, BN, BK, LDB, THREADS>(sB, B, p.ldb, n0, N, k0, K, b_vec);
    } else {
      const int khw = p.conv_KH * p.conv_KW;
      for (int kr = im_kr0; kr < BK; kr += KSTEP) {
        const int64_t k = k0 + kr;
        T val = zero_val<T>();
        if (im_nvalid && k < K) {
          const int64_t c = k / khw;
          const int r = int(k - c * khw);
          const int kh = r / p.conv_KW, kw = r - kh * p.conv_KW;
          const int64_t iy = im_iy0 + kh, ix = im_ix0 + kw;
          if (iy >= 0 && iy < p.conv_H && ix >= 0 && ix < p.conv_W) val = B[(c * p.conv_H + iy) * p.conv_W + ix];
        }
        sB[kr * LDB + im_nc] = val;
      }
    }
    __syncthreads();

    // ---- multiply the staged slice ----
    if constexpr (kHalf) {
#pragma unroll
      for (int kk = 0; kk < BK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, LayoutA> fa[FM];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, LayoutB> fb[FN];
#pragma unroll
        for (int i = 0; i < FM; ++i) {
          const int mm = wm * WTM + i * 16;
          wmma::load_matrix_sync(fa[i], TA ? sA + kk * LDA + mm : sA + mm * LDA + kk, LDA);
        }
#pragma unroll
        for (int j = 0; j < FN; ++j) {
          const int nn = wn * WTN + j * 16;
          wmma::load_matrix_sync(fb[j], B_NK ? sB + nn * LDB + kk : sB + kk * LDB + nn, LDB);
        }
#pragma unroll
        for (int i = 0; i < FM; ++i)
#pragma unroll
          for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    } else {
#pragma unroll 4
      for (int kk = 0; kk < BK; ++kk) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          const int m = ty + i * TY;
          a[i] = to_f(TA ? sA[kk * LDA + m] : sA[m * LDA + kk]);
        }
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int n = tx + j * TX;
          b[j] = to_f(B_NK ? sB[n * LDB + kk] : sB[kk * LDB + n]);
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) facc[i][j] = fmaf(a[i], b[j], facc[i][j]);
      }
    }
    __syncthreads();
  }

  // ---- epilogue ----
  if constexpr (kHalf) {
    __shared__ __align__(128) float scratch[WARPS_M * WARPS_N][16 * 16];
    float* sc = scratch[warp];
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::store_matrix_sync(sc, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
          const int64_t m = m0 + wm * WTM + i * 16 + e / 16, n = n0 + wn * WTN + j * 16 + e % 16;
          if (m < M && n < N) store_out<T>(p, C, bias, R, m, n, sc[e]);
        }
        __syncwarp();
      }
  } else {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t m = m0 + ty + i * TY, n = n0 + tx + j * TX;
        if (m < M && n < N) store_out<T>(p, C, bias, R, m, n, facc[i][j]);
      }
  }
}

template <typename T, int BM, int BN, int WARPS_M, int WARPS_N>
void launch_cfg(const GemmParams& p, bool a_vec, bool b_vec, cudaStream_t s) {
  const dim3 grid(unsigned(CEIL_DIV(p.M, int64_t(BM))), unsigned(CEIL_DIV(p.N, int64_t(BN))), unsigned(p.batch));
  constexpr int threads = WARPS_M * WARPS_N * 32;
  if (p.trans_a) {
    L2D_ASSERT(p.b_mode == kGemmB_KN);
    gemm_kernel<T, BM, BN, WARPS_M, WARPS_N, true, kGemmB_KN><<<grid, threads, 0, s>>>(p, a_vec, b_vec);
  } else if (p.b_mode == kGemmB_KN) {
    gemm_kernel<T, BM, BN, WARPS_M, WARPS_N, false, kGemmB_KN><<<grid, threads, 0, s>>>(p, a_vec, b_vec);
  } else if (p.b_mode == kGemmB_NK) {
    gemm_kernel<T, BM, BN, WARPS_M, WARPS_N, false, kGemmB_NK><<<grid, threads, 0, s>>>(p, a_vec, b_vec);
  } else {
    gemm_kernel<T, BM, BN, WARPS_M, WARPS_N, false, kGemmB_Im2col><<<grid, threads, 0, s>>>(p, a_vec, b_vec);
  }
}

template <typename T>
void gemm_t(const GemmParams& p, cudaStream_t s) {
  constexpr int VEC = 16 / int(sizeof(T));
  auto aligned = [&](const void* ptr, int64_t ld, int64_t bs) {
    return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % VEC == 0 && bs % VEC == 0;
  };
  const bool a_vec = aligned(p.A, p.lda, p.a_bs);
  const bool b_vec = p.b_mode != kGemmB_Im2col && aligned(p.B, p.ldb, p.b_bs);
  const int64_t big_tiles = CEIL_DIV(p.M, int64_t(128)) * CEIL_DIV(p.N, int64_t(128)) * p.batch;
  if (p.M <= 64 || p.N <= 64 || big_tiles < 2 * int64_t(device_sm_count())) launch_cfg<T, 64, 64, 2, 2>(p, a_vec, b_vec, s);
  else launch_cfg<T, 128, 128, 2, 4>(p, a_vec, b_vec, s);
}

}  // namespace

void gemm_cuda(const GemmParams& p, bool fp16, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0 || p.batch <= 0) return;
  L2D_ASSERT(p.batch <= 65535 && CEIL_DIV(p.N, int64_t(64)) <= 65535 && CEIL_DIV(p.M, int64_t(64)) < (int64_t(1) << 31));
  L2D_ASSERT(p.epilogue == kEpiDense || (p.epilogue == kEpiConvT && !p.residual && p.bias_bs == 0));
  if (fp16) gemm_t<__half>(p, stream);
  else gemm_t<float>(p, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
