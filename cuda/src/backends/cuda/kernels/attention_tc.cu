// FlashAttention-2 style attention on tensor cores (fp16 storage, fp32 accumulation).
//
// Grid (ceil(Lq / 64), heads, B), 4 warps; warp w owns queries [16w, 16w + 16) of the CTA's 64,
// i.e. exactly the 16 rows of one mma.sync m16n8k16 A operand. The head dim D (a multiple of 8)
// is zero-padded to DP (48, 64, 80 or 160) in shared memory, so 40 runs as 48 (3 k-steps of 16);
// padded dims contribute 0 to q.k and are never stored.
//
// Per key tile of BC keys (64, or 32 at DP = 160 to stay under the 99 KB of an sm_89 CTA):
//   - K/V tiles are double-buffered: tile j + 1 is copied with cp.async (16 B per thread, zero
//     fill past Lk) while tile j is computed; one __syncthreads per tile;
//   - S = Q K^T with Q held in registers (A fragments, loaded once by ldmatrix) and K fragments
//     from ldmatrix (K rows are keys, i.e. the "col" B operand as stored);
//   - online softmax in the log2 domain with fp32 running max m and sum l per query row (each
//     row's 4 owner lanes combine by shuffles); masked keys (past Lk, causal) are -inf and give
//     exactly 0;
//   - O += P V with P converted in registers from the S accumulator layout to A fragments (the
//     two layouts coincide per 16-key step) and V fragments from ldmatrix.trans.
// Output O / l, stored as half2 pairs. Causal CTAs stop after their last query's tile.
//
// Shared rows are DP + 8 halves apart: the 16-byte skew makes the 8 row addresses of every
// ldmatrix phase fall in distinct bank groups for all four DP values.
#include <atomic>
#include <cstdint>

#include "../common.cuh"
#include "attention_tc.cuh"
#include "mma_sm80.cuh"

namespace l2d::cuda {
namespace {

using namespace ptx;

constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kTcQTile = 16 * kTcWarps;  // 64 queries per CTA

template <int DP>
struct TcShape {
  static constexpr int kKTile = DP > 80 ? 32 : 64;  // keys per tile
  static constexpr int kStride = DP + 8;            // halves between shared rows
  static constexpr int kChunks = DP / 8;            // 16-byte chunks per row
  static constexpr size_t kSmemBytes = sizeof(__half) * size_t(kStride) * (kTcQTile + 4 * kKTile);
  static_assert(DP % 16 == 0 && kKTile % 16 == 0, "mma k-steps are 16 wide");
};

// Two floats as one register of halves, the lower-indexed element in the low 16 bits.
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// rows [row0, row0 + rows) of a head slice whose rows are ld halves apart -> shared
// [rows][kStride]; rows >= limit and chunks past D are zero-filled.
template <int DP>
__device__ __forceinline__ void load_tile(__half* dst, const __half* src, int row0, int rows, int limit, int64_t ld,
                                          int D) {
  using Sh = TcShape<DP>;
  for (int e = threadIdx.x; e < rows * Sh::kChunks; e += kTcThreads) {
    const int r = e / Sh::kChunks, c = e - r * Sh::kChunks;
    const bool ok = row0 + r < limit && c * 8 < D;
    cp_async16(dst + r * Sh::kStride + c * 8, ok ? src + int64_t(row0 + r) * ld + c * 8 : src, ok);
  }
}

template <int DP>
static __global__ void __launch_bounds__(kTcThreads)
    attention_tc_kernel(const __half* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                        __half* __restrict__ y, int Lq, int Lk, int Bk, int heads, int D, AttnLd ld,
                        bool causal, float scale_log2) {
  using Sh = TcShape<DP>;
  constexpr int BC = Sh::kKTile, S = Sh::kStride;
  constexpr int KSTEPS = DP / 16;  // k-steps of Q K^T
  constexpr int NT_S = BC / 8;     // 8-key column tiles of S
  constexpr int NT_O = DP / 8;     // 8-dim column tiles of O
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* sQ = reinterpret_cast<__half*>(smem_raw);
  __half* sK = sQ + kTcQTile * S;  // [2][BC][S]
  __half* sV = sK + 2 * BC * S;    // [2][BC][S]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;  // mma fragment row group / column pair
  const int mi = lane >> 3, mr = lane & 7;  // ldmatrix: matrix and row this lane addresses
  const int b = blockIdx.z, h = blockIdx.y, q_block0 = blockIdx.x * kTcQTile;
  const int64_t HD = int64_t(heads) * D;  // y rows
  const __half* qb = q + int64_t(b) * Lq * ld.q + int64_t(h) * D;
  const int64_t kv_off = int64_t(Bk == 1 ? 0 : b) * Lk * ld.kv + int64_t(h) * D;
  const __half* kb = k + kv_off;
  const __half* vb = v + kv_off;

  const int k_end = causal ? min(Lk, q_block0 + kTcQTile) : Lk;
  const int n_tiles = CEIL_DIV(k_end, BC);
  load_tile<DP>(sQ, qb, q_block0, kTcQTile, Lq, ld.q, D);
  load_tile<DP>(sK, kb, 0, BC, Lk, ld.kv, D);
  load_tile<DP>(sV, vb, 0, BC, Lk, ld.kv, D);
  cp_async_commit();

  const int qrow = q_block0 + warp * 16 + g;  // this lane's rows: qrow and qrow + 8
  uint32_t qf[KSTEPS][4];
  float o[NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<0>();
    __syncthreads();  // tile j (and Q) landed for every thread; tile j - 1 fully consumed
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < KSTEPS; ++ks)
        ldmatrix_x4(qf[ks], sQ + (warp * 16 + (mi & 1) * 8 + mr) * S + ks * 16 + (mi >> 1) * 8);
    }
    if (j + 1 < n_tiles) {
      const int nb = (j + 1) & 1;
      load_tile<DP>(sK + nb * BC * S, kb, (j + 1) * BC, BC, Lk, ld.kv, D);
      load_tile<DP>(sV + nb * BC * S, vb, (j + 1) * BC, BC, Lk, ld.kv, D);
    }
    cp_async_commit();
    const __half* cK = sK + (j & 1) * BC * S;
    const __half* cV = sV + (j & 1) * BC * S;

    // S = Q K^T (16 x BC per warp).
    float s[NT_S][4];
#pragma unroll
    for (int n = 0; n < NT_S; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
#pragma unroll
      for (int np = 0; np < NT_S / 2; ++np) {
        uint32_t kf[4];  // {b0, b1} of key tile 2np, then of 2np + 1
        ldmatrix_x4(kf, cK + ((2 * np + (mi >> 1)) * 8 + mr) * S + ks * 16 + (mi & 1) * 8);
        mma16816(s[2 * np], qf[ks], kf[0], kf[1]);
        mma16816(s[2 * np + 1], qf[ks], kf[2], kf[3]);
      }
    }

    // Scale into the log2 domain, mask, row maxima (element e: row qrow + 8 (e >> 1), key 2t + (e & 1)).
    const int key0 = j * BC + 2 * t;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NT_S; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + n * 8 + (e & 1);
        const bool ok = key < Lk && (!causal || key <= qrow + 8 * (e >> 1));
        s[n][e] = ok ? s[n][e] * scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    }
    float alpha[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m[i], mx[i]);
      // Nothing valid yet: keep alpha 1 (o and l are 0). Otherwise exp2(-inf) == 0 drops a -inf max.
      alpha[i] = m_new == -INFINITY ? 1.f : exp2f(m[i] - m_new);
      m[i] = m_new;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < NT_S; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float mm = m[e >> 1];
        const float p = mm == -INFINITY ? 0.f : exp2f(s[n][e] - mm);
        s[n][e] = p;
        rs[e >> 1] += p;
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * alpha[i] + rs[i];  // per-lane partial sums, combined at the end
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }

    // O += P V, 16 keys per k-step.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const uint32_t pa[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                              pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < NT_O / 2; ++np) {
        uint32_t vf[4];  // {b0, b1} of dim tile 2np, then of 2np + 1
        ldmatrix_x4_trans(vf, cV + (kk * 16 + (mi & 1) * 8 + mr) * S + (2 * np + (mi >> 1)) * 8);
        mma16816(o[2 * np], pa, vf[0], vf[1]);
        mma16816(o[2 * np + 1], pa, vf[2], vf[3]);
      }
    }
  }
  cp_async_wait<0>();  // the last (empty) group: nothing may be in flight at exit

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const int qi = qrow + 8 * i;
    if (qi >= Lq) continue;
    const float inv = 1.f / l[i];
    __half* yr = y + (int64_t(b) * Lq + qi) * HD + int64_t(h) * D;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      const int d = n * 8 + 2 * t;
      if (n * 8 < D) *reinterpret_cast<__half2*>(yr + d) = __floats2half2_rn(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
  }
}

template <int DP>
void launch_tc(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads, int D,
               AttnLd ld, bool causal, cudaStream_t s) {
  constexpr size_t smem = TcShape<DP>::kSmemBytes;
  // Above 48 KB a kernel must opt in, once per device (idempotent, so a race is benign).
  static std::atomic<uint64_t> configured{0};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (!(configured.load() & bit)) {
    CUDA_CHECK(cudaFuncSetAttribute(attention_tc_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured |= bit;
  }
  const dim3 grid(unsigned(CEIL_DIV(Lq, kTcQTile)), unsigned(heads), unsigned(B));
  const float scale_log2 = 1.4426950408889634f / sqrtf(float(D));  // log2(e) / sqrt(D)
  attention_tc_kernel<DP><<<grid, kTcThreads, smem, s>>>(static_cast<const __half*>(q), static_cast<const __half*>(k),
                                                         static_cast<const __half*>(v), static_cast<__half*>(y), Lq, Lk,
                                                         Bk, heads, D, ld, causal, scale_log2);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool attention_tc_supported(const void* q, const void* k, const void* v, const void* y, int D, AttnLd ld,
                            bool fp16) {
  // Every row start must stay 16-byte aligned for cp.async: ld % 8 == 0 halves (3C qualifies when C does).
  return fp16 && D >= 8 && D <= 160 && D % 8 == 0 && ld.q % 8 == 0 && ld.kv % 8 == 0 && aligned16(q) &&
         aligned16(k) && aligned16(v) && aligned16(y);
}

void attention_tc_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                       int D, AttnLd ld, bool causal, cudaStream_t stream) {
  if (B <= 0 || Lq <= 0) return;
  L2D_ASSERT(attention_tc_supported(q, k, v, y, D, ld, true));
  L2D_ASSERT(Lk > 0 && heads <= 65535 && B <= 65535);
  L2D_ASSERT(ld.q >= int64_t(heads) * D && ld.kv >= int64_t(heads) * D);
  // Padding: 40 -> 48 costs 20% more mma work but keeps every k-step full; 56/64 -> 64, 72/80 -> 80,
  // and the rare 88..160 run at 160.
  if (D <= 48) launch_tc<48>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  else if (D <= 64) launch_tc<64>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  else if (D <= 80) launch_tc<80>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  else launch_tc<160>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
