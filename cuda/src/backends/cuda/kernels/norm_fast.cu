// The fast norms (L2D_NORM=fast). Why they are faster than norm.cu:
// - GroupNorm: norm.cu runs one 512-thread CTA per (n, group), i.e. 64..96 CTAs at the UNet shapes
//   and 32 for MiDaS (N = 1) on a 132-SM GPU, with 2-byte loads and three sweeps of the slab. Here
//   each slab is cut into chunks (about 4 CTAs per SM in all), one kernel writes each chunk's
//   (mean, M2), and a second one combines a slab's partials (one warp, Chan's formula) and writes
//   the chunk normalised with gamma/beta (+ SiLU) fused: two reads and one write of the tensor,
//   16-byte vectors. Groups too small to split (one chunk) take one kernel, one CTA per group.
// - LayerNorm: one warp per row holding the row in registers: one read, one write.
// Numerics: every vector's mean and M2 are exact two-pass sums over its 4/8 values in registers,
// merged into the thread's running statistics with Chan's parallel formula (the Welford update
// for a batch), then across the warp, the CTA and the chunks the same way. The variance is never
// E[x^2] - E[x]^2, so a mean of 1e4 with a spread of 25 loses nothing to cancellation.
#include <cstdint>
#include <type_traits>

#include "../common.cuh"
#include "norm_fast.cuh"
#include "norm_tokens_tile.h"

namespace l2d::cuda {
namespace {

constexpr int kGnThreads = 256;
constexpr int64_t kGnMaxChunks = 1024;  // the combine is one warp looping over the partials
constexpr int kGnCtasPerSm = 4;         // 256 threads each: all resident at once, one wave
constexpr int kLnWarps = 4;             // rows per LayerNorm CTA (one warp each)
constexpr int kLnMaxVecsPerLane = 16;   // the row in registers: C <= 16 * 32 * vec

// Loads / stores `VEC` consecutive elements (vector v of p) as floats: one 16-byte access when VEC
// is 8 (fp16) or 4 (fp32), else one scalar.
template <typename T, int VEC>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, int64_t v, float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    f[0] = to_f(p[v]);
  } else if constexpr (std::is_same_v<T, float>) {
    static_assert(VEC == 4, "fp32 vectors are float4");
    const float4 q = __ldg(reinterpret_cast<const float4*>(p) + v);
    f[0] = q.x;
    f[1] = q.y;
    f[2] = q.z;
    f[3] = q.w;
  } else {
    static_assert(VEC == 8, "fp16 vectors are 8 halves");
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(p) + v);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};  // little-endian: element 2i in the low half
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __half2float(__ushort_as_half(uint16_t(w[i] & 0xFFFFu)));
      f[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(w[i] >> 16)));
    }
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* __restrict__ p, int64_t v, const float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    p[v] = from_f<T>(f[0]);
  } else if constexpr (std::is_same_v<T, float>) {
    reinterpret_cast<float4*>(p)[v] = make_float4(f[0], f[1], f[2], f[3]);
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      w[i] = uint32_t(__half_as_ushort(__float2half_rn(f[2 * i]))) |
             (uint32_t(__half_as_ushort(__float2half_rn(f[2 * i + 1]))) << 16);
    reinterpret_cast<uint4*>(p)[v] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// Count, mean and sum of squared deviations of a set of values.
struct Stats {
  float n, mean, m2;
};

// a <- a merged with (nb, mb, m2b) (Chan et al.): exact for the counts, no cancellation.
__device__ __forceinline__ void merge(Stats& a, float nb, float mb, float m2b) {
  if (nb == 0.f) return;
  const float n = a.n + nb, d = mb - a.mean, wb = nb / n;
  a.mean += d * wb;  // a.n == 0: a.mean was 0, so this is exactly mb
  a.m2 += m2b + d * d * a.n * wb;
  a.n = n;
}

__device__ __forceinline__ Stats warp_merge(Stats s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float nb = __shfl_xor_sync(0xffffffffu, s.n, o), mb = __shfl_xor_sync(0xffffffffu, s.mean, o),
                m2b = __shfl_xor_sync(0xffffffffu, s.m2, o);
    merge(s, nb, mb, m2b);
  }
  return s;
}

// The statistics of vectors [v0, v1) of xp, merged over the CTA: valid in thread 0. Each vector's
// mean and M2 are exact in registers; the merges are Chan's.
template <typename T, int VEC>
__device__ __forceinline__ Stats range_stats(const T* __restrict__ xp, int64_t v0, int64_t v1) {
  __shared__ Stats red[kGnThreads / 32];
  Stats s{0.f, 0.f, 0.f};
#pragma unroll 4
  for (int64_t v = v0 + threadIdx.x; v < v1; v += kGnThreads) {
    float f[VEC];
    load_vec<T, VEC>(xp, v, f);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) sum += f[i];
    const float m = sum * (1.f / VEC);
    float m2 = 0.f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) m2 += (f[i] - m) * (f[i] - m);
    merge(s, float(VEC), m, m2);
  }
  s = warp_merge(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < kGnThreads / 32 ? red[lane] : Stats{0.f, 0.f, 0.f};
    s = warp_merge(s);
  }
  return s;
}

// Normalises vectors [v0, v1) of slab xp -> yp: y = (x - mean) * (rstd * gamma[c]) + beta[c], then
// SiLU. S % VEC == 0, so a vector never straddles two channels; c0 = the group's first channel.
template <typename T, int VEC>
__device__ __forceinline__ void apply_range(const T* __restrict__ xp, T* __restrict__ yp, const T* __restrict__ gamma,
                                            const T* __restrict__ beta, int64_t v0, int64_t v1, uint32_t S, int c0,
                                            float mean, float rstd, bool silu) {
#pragma unroll 4
  for (int64_t v = v0 + threadIdx.x; v < v1; v += kGnThreads) {
    float f[VEC];
    load_vec<T, VEC>(xp, v, f);
    const int c = c0 + int(uint32_t(v * VEC) / S);  // slab_elems < 2^31 (the plan checks)
    const float a = rstd * to_f(gamma[c]), b = to_f(beta[c]);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      float o = (f[i] - mean) * a + b;
      if (silu) o = o / (1.f + expf(-o));
      f[i] = o;
    }
    store_vec<T, VEC>(yp, v, f);
  }
}

__device__ __forceinline__ float rstd_of(const Stats& s, int64_t count, float eps) {
  return 1.f / sqrtf(s.m2 / float(count) + eps);  // biased variance, as the CPU oracle
}

// Pass 1 (slabs of several chunks): the (mean, M2) of chunk blockIdx.x % chunks of slab
// blockIdx.x / chunks into partial[2 * blockIdx.x ..].
template <typename T, int VEC>
__global__ void __launch_bounds__(kGnThreads)
    gn_chunk_stats_kernel(const T* __restrict__ x, int64_t slab_elems, int64_t chunk_vecs, int64_t chunks,
                          float* __restrict__ partial) {
  const int64_t slab = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t slab_vecs = slab_elems / VEC, v0 = chunk * chunk_vecs;
  const int64_t v1 = v0 + chunk_vecs < slab_vecs ? v0 + chunk_vecs : slab_vecs;
  const Stats s = range_stats<T, VEC>(x + slab * slab_elems, v0, v1);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = s.mean;
    partial[2 * blockIdx.x + 1] = s.m2;
  }
}

// Pass 2: merge the slab's chunk statistics (warp 0), then normalise this CTA's chunk.
template <typename T, int VEC>
__global__ void __launch_bounds__(kGnThreads)
    gn_apply_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                    const float* __restrict__ partial, uint32_t S, int cg, int groups, int64_t slab_elems,
                    int64_t chunk_vecs, int64_t chunks, float eps, bool silu) {
  __shared__ float stat[2];
  const int64_t slab = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t slab_vecs = slab_elems / VEC;
  if (threadIdx.x < 32) {
    Stats s{0.f, 0.f, 0.f};
    for (int64_t k = threadIdx.x; k < chunks; k += 32) {
      const int64_t left = slab_vecs - k * chunk_vecs;
      const float n = float((left < chunk_vecs ? left : chunk_vecs) * VEC);
      merge(s, n, partial[2 * (slab * chunks + k)], partial[2 * (slab * chunks + k) + 1]);
    }
    s = warp_merge(s);
    if (threadIdx.x == 0) {
      stat[0] = s.mean;
      stat[1] = rstd_of(s, slab_elems, eps);
    }
  }
  __syncthreads();
  const int64_t v0 = chunk * chunk_vecs, v1 = v0 + chunk_vecs < slab_vecs ? v0 + chunk_vecs : slab_vecs;
  apply_range<T, VEC>(x + slab * slab_elems, y + slab * slab_elems, gamma, beta, v0, v1, S, int(slab % groups) * cg,
                      stat[0], stat[1], silu);
}

// A slab of one chunk (small groups): statistics and normalisation in one kernel, one CTA per slab
// (the second read of the slab comes from L1/L2).
template <typename T, int VEC>
__global__ void __launch_bounds__(kGnThreads)
    gn_slab_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                   uint32_t S, int cg, int groups, int64_t slab_elems, float eps, bool silu) {
  __shared__ float stat[2];
  const int64_t slab = blockIdx.x;
  const Stats s = range_stats<T, VEC>(x + slab * slab_elems, 0, slab_elems / VEC);
  if (threadIdx.x == 0) {
    stat[0] = s.mean;
    stat[1] = rstd_of(s, slab_elems, eps);
  }
  __syncthreads();
  apply_range<T, VEC>(x + slab * slab_elems, y + slab * slab_elems, gamma, beta, 0, slab_elems / VEC, S,
                      int(slab % groups) * cg, stat[0], stat[1], silu);
}

// Tokens output (Backend::group_norm_tokens): y [N, S, C]. A CTA owns the tile of tok::kS positions
// x tok::kC channels of one image (norm_tokens_tile.h, checked on the CPU by test_norm_tokens_tile):
// it merges the chunk statistics of the groups the tile touches (one warp per group), reads the tile
// from NCHW (each warp a channel row of kS positions, coalesced), normalises it into shared memory,
// and writes it back transposed (each warp one position's kC channels, coalesced). Rows padded to
// kS + 1 floats keep both shared-memory accesses free of bank conflicts.
template <typename T>
__global__ void __launch_bounds__(tok::kThreads)
    gn_apply_tokens_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                           T* __restrict__ y, const float* __restrict__ partial, int64_t S, int C, int cg, int groups,
                           int64_t slab_elems, int64_t chunk_vecs, int64_t chunks, int vec, float eps, bool silu) {
  static_assert(tok::kThreads == kGnThreads && tok::kC <= tok::kThreads, "one thread per tile channel");
  __shared__ float tile[tok::kC][tok::kS + 1];
  __shared__ float grp_mean[tok::kC], grp_rstd[tok::kC];  // per group touched (at most kC)
  __shared__ float ch_mean[tok::kC], ch_scale[tok::kC], ch_shift[tok::kC];
  const tok::Tile tl = tok::tile_of(blockIdx.x, blockIdx.y, blockIdx.z, C, cg);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t slab_vecs = slab_elems / vec;
  for (int gi = warp; gi < tl.groups; gi += tok::kWarps) {
    const int64_t slab = tl.n * groups + tl.g0 + gi;
    Stats st{0.f, 0.f, 0.f};
    for (int64_t k = lane; k < chunks; k += 32) {
      const int64_t left = slab_vecs - k * chunk_vecs;
      const float cnt = float((left < chunk_vecs ? left : chunk_vecs) * vec);
      merge(st, cnt, partial[2 * (slab * chunks + k)], partial[2 * (slab * chunks + k) + 1]);
    }
    st = warp_merge(st);
    if (lane == 0) {
      grp_mean[gi] = st.mean;
      grp_rstd[gi] = rstd_of(st, slab_elems, eps);
    }
  }
  __syncthreads();
  if (int(threadIdx.x) < tl.c_end - tl.c0) {
    const int c = tl.c0 + int(threadIdx.x), gi = c / cg - tl.g0;
    ch_mean[threadIdx.x] = grp_mean[gi];
    ch_scale[threadIdx.x] = grp_rstd[gi] * to_f(gamma[c]);
    ch_shift[threadIdx.x] = to_f(beta[c]);
  }
  __syncthreads();
  const int64_t s = tl.s0 + lane;
  for (int r = warp; r < tok::kC; r += tok::kWarps) {
    if (tl.c0 + r < tl.c_end && s < S) {
      float o = (to_f(x[tok::src_index(tl.n, C, S, tl.c0 + r, s)]) - ch_mean[r]) * ch_scale[r] + ch_shift[r];
      if (silu) o = o / (1.f + expf(-o));
      tile[r][lane] = o;
    }
  }
  __syncthreads();
  for (int p = warp; p < tok::kS && tl.s0 + p < S; p += tok::kWarps)  // uniform per warp
    for (int r = lane; r < tok::kC; r += 32)
      if (tl.c0 + r < tl.c_end) y[tok::dst_index(tl.n, C, S, tl.c0 + r, tl.s0 + p)] = from_f<T>(tile[r][p]);
}

template <typename T, int VEC>
void gn_tokens_launch(const GroupNormPlan& p, const void* x, const void* g, const void* b, void* y, int64_t N,
                      int64_t C, int64_t S, int groups, float eps, bool silu, float* scratch, cudaStream_t s) {
  const unsigned ctas = unsigned(p.slabs * p.chunks);
  gn_chunk_stats_kernel<T, VEC><<<ctas, kGnThreads, 0, s>>>(static_cast<const T*>(x), p.slab_elems, p.chunk_vecs,
                                                            p.chunks, scratch);
  CUDA_CHECK_LAUNCH();  // counts this launch; the caller's check counts the apply kernel
  const dim3 grid(unsigned(tok::position_tiles(S)), unsigned(tok::channel_tiles(C)), unsigned(N));
  gn_apply_tokens_kernel<T><<<grid, tok::kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<const T*>(g),
                                                           static_cast<const T*>(b), static_cast<T*>(y), scratch, S,
                                                           int(C), int(C / groups), groups, p.slab_elems, p.chunk_vecs,
                                                           p.chunks, VEC, eps, silu);
}

template <typename T, int VEC>
void gn_launch(const GroupNormPlan& p, const void* x, const void* g, const void* b, void* y, int64_t C, int64_t S,
               int groups, float eps, bool silu, float* scratch, cudaStream_t s) {
  const T* xt = static_cast<const T*>(x);
  const T *gt = static_cast<const T*>(g), *bt = static_cast<const T*>(b);
  T* yt = static_cast<T*>(y);
  const int cg = int(C / groups);
  if (p.chunks == 1) {
    gn_slab_kernel<T, VEC><<<unsigned(p.slabs), kGnThreads, 0, s>>>(xt, gt, bt, yt, uint32_t(S), cg, groups,
                                                                     p.slab_elems, eps, silu);
    return;
  }
  const unsigned ctas = unsigned(p.slabs * p.chunks);
  gn_chunk_stats_kernel<T, VEC><<<ctas, kGnThreads, 0, s>>>(xt, p.slab_elems, p.chunk_vecs, p.chunks, scratch);
  CUDA_CHECK_LAUNCH();  // counts this launch; the caller's check counts the apply kernel
  gn_apply_kernel<T, VEC><<<ctas, kGnThreads, 0, s>>>(xt, gt, bt, yt, scratch, uint32_t(S), cg, groups, p.slab_elems,
                                                      p.chunk_vecs, p.chunks, eps, silu);
}

// LayerNorm: warp (threadIdx.x / 32) of the CTA normalises row blockIdx.x * kLnWarps + warp. Lane l
// holds vectors l, l + 32, ... (up to NV of them) in registers: exact two-pass mean and variance
// as the CPU oracle, then the write.
template <typename T, int VEC, int NV>
__global__ void __launch_bounds__(kLnWarps * 32)
    ln_fast_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                   int64_t rows, int C, float eps) {
  const int64_t row = int64_t(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // whole warp leaves together
  const int nvec = C / VEC;
  const T* xp = x + row * C;
  T* yp = y + row * C;
  float f[NV][VEC];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int j = lane + 32 * k;
    if (j < nvec) {
      load_vec<T, VEC>(xp, j, f[k]);
#pragma unroll
      for (int i = 0; i < VEC; ++i) sum += f[k][i];
    } else {
#pragma unroll
      for (int i = 0; i < VEC; ++i) f[k][i] = 0.f;
    }
  }
  const float mean = warp_sum(sum) / float(C);
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k)
    if (lane + 32 * k < nvec) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        f[k][i] -= mean;  // centred once, reused by the write
        ss += f[k][i] * f[k][i];
      }
    }
  const float rstd = 1.f / sqrtf(warp_sum(ss) / float(C) + eps);
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int j = lane + 32 * k;
    if (j < nvec) {
      float g[VEC], b[VEC];
      load_vec<T, VEC>(gamma, j, g);
      load_vec<T, VEC>(beta, j, b);
#pragma unroll
      for (int i = 0; i < VEC; ++i) f[k][i] = f[k][i] * rstd * g[i] + b[i];
      store_vec<T, VEC>(yp, j, f[k]);
    }
  }
}

template <typename T, int VEC, int NV>
void ln_launch(const void* x, const void* g, const void* b, void* y, int64_t rows, int64_t C, float eps,
               cudaStream_t s) {
  ln_fast_kernel<T, VEC, NV><<<unsigned(CEIL_DIV(rows, int64_t(kLnWarps))), kLnWarps * 32, 0, s>>>(
      static_cast<const T*>(x), static_cast<const T*>(g), static_cast<const T*>(b), static_cast<T*>(y), rows, int(C),
      eps);
}

// The smallest compiled NV that holds `per_lane` vectors per lane (few instantiations, few wasted registers).
template <typename T, int VEC>
void ln_dispatch(const void* x, const void* g, const void* b, void* y, int64_t rows, int64_t C, float eps,
                 cudaStream_t s) {
  const int64_t per_lane = CEIL_DIV(C / VEC, int64_t(32));
  if (per_lane <= 1) ln_launch<T, VEC, 1>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 2) ln_launch<T, VEC, 2>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 3) ln_launch<T, VEC, 3>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 4) ln_launch<T, VEC, 4>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 5) ln_launch<T, VEC, 5>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 6) ln_launch<T, VEC, 6>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 8) ln_launch<T, VEC, 8>(x, g, b, y, rows, C, eps, s);
  else if (per_lane <= 12) ln_launch<T, VEC, 12>(x, g, b, y, rows, C, eps, s);
  else ln_launch<T, VEC, kLnMaxVecsPerLane>(x, g, b, y, rows, C, eps, s);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

GroupNormPlan group_norm_fast_plan(const void* x, const void* y, int64_t N, int64_t C, int64_t S, int groups, bool fp16,
                                   int sms) {
  L2D_ASSERT(groups > 0 && C % groups == 0 && N >= 0 && S >= 0);
  GroupNormPlan p;
  p.slabs = N * groups;
  p.slab_elems = C / groups * S;
  if (p.slabs == 0 || p.slab_elems == 0) return p;
  // uint32 channel index math in the apply kernel, float counts exact to 2^24 per chunk.
  if (p.slab_elems >= (int64_t(1) << 31))
    fail(L2D_ERR_UNSUPPORTED, "group_norm: ", p.slab_elems, " elements per group is too large for the CUDA kernels");
  const int wide = fp16 ? 8 : 4;
  p.vec = S % wide == 0 && aligned16(x) && aligned16(y) ? wide : 1;
  const int64_t slab_vecs = p.slab_elems / p.vec;
  // About kGnCtasPerSm CTAs per SM in all, but at least 2 vectors per thread per chunk (below that
  // a CTA is mostly its own launch and combine) and at most kGnMaxChunks chunks per slab.
  const int64_t target = int64_t(kGnCtasPerSm) * (sms > 0 ? sms : 1);
  int64_t chunk = CEIL_DIV(slab_vecs, CEIL_DIV(target, p.slabs));
  if (chunk < 2 * kGnThreads) chunk = 2 * kGnThreads;
  if (chunk < CEIL_DIV(slab_vecs, kGnMaxChunks)) chunk = CEIL_DIV(slab_vecs, kGnMaxChunks);
  if (chunk > slab_vecs) chunk = slab_vecs;
  p.chunk_vecs = chunk;
  p.chunks = CEIL_DIV(slab_vecs, chunk);
  if (p.slabs * p.chunks >= (int64_t(1) << 31))
    fail(L2D_ERR_UNSUPPORTED, "group_norm: ", p.slabs, " groups is too many for the CUDA kernels");
  return p;
}

void group_norm_fast_cuda(const GroupNormPlan& plan, const void* x, const void* gamma, const void* beta, void* y,
                          int64_t C, int64_t S, int groups, float eps, bool silu, bool fp16, float* scratch,
                          cudaStream_t stream) {
  if (plan.empty()) return;
  L2D_ASSERT(plan.chunks == 1 || scratch != nullptr);
  if (fp16) {
    if (plan.vec == 8) gn_launch<__half, 8>(plan, x, gamma, beta, y, C, S, groups, eps, silu, scratch, stream);
    else gn_launch<__half, 1>(plan, x, gamma, beta, y, C, S, groups, eps, silu, scratch, stream);
  } else {
    if (plan.vec == 4) gn_launch<float, 4>(plan, x, gamma, beta, y, C, S, groups, eps, silu, scratch, stream);
    else gn_launch<float, 1>(plan, x, gamma, beta, y, C, S, groups, eps, silu, scratch, stream);
  }
  CUDA_CHECK_LAUNCH();
}

void group_norm_tokens_fast_cuda(const GroupNormPlan& plan, const void* x, const void* gamma, const void* beta,
                                 void* y, int64_t N, int64_t C, int64_t S, int groups, float eps, bool silu, bool fp16,
                                 float* scratch, cudaStream_t stream) {
  if (plan.empty()) return;
  L2D_ASSERT(scratch != nullptr && plan.slabs == N * groups);
  if (N > 65535 || tok::channel_tiles(C) > 65535 || tok::position_tiles(S) >= (int64_t(1) << 31) ||
      C >= (int64_t(1) << 31))
    fail(L2D_ERR_UNSUPPORTED, "group_norm_tokens: [", N, ", ", C, ", ", S, "] is too large for the CUDA kernels");
  if (fp16) {
    if (plan.vec == 8) gn_tokens_launch<__half, 8>(plan, x, gamma, beta, y, N, C, S, groups, eps, silu, scratch, stream);
    else gn_tokens_launch<__half, 1>(plan, x, gamma, beta, y, N, C, S, groups, eps, silu, scratch, stream);
  } else {
    if (plan.vec == 4) gn_tokens_launch<float, 4>(plan, x, gamma, beta, y, N, C, S, groups, eps, silu, scratch, stream);
    else gn_tokens_launch<float, 1>(plan, x, gamma, beta, y, N, C, S, groups, eps, silu, scratch, stream);
  }
  CUDA_CHECK_LAUNCH();
}

bool layer_norm_fast_supported(const void* x, const void* gamma, const void* beta, const void* y, int64_t C,
                               bool fp16) {
  const int64_t vec = fp16 ? 8 : 4;
  return C > 0 && C % vec == 0 && C <= int64_t(kLnMaxVecsPerLane) * 32 * vec && aligned16(x) && aligned16(gamma) &&
         aligned16(beta) && aligned16(y);
}

void layer_norm_fast_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t C,
                          float eps, bool fp16, cudaStream_t stream) {
  if (rows <= 0) return;
  L2D_ASSERT(layer_norm_fast_supported(x, gamma, beta, y, C, fp16));
  if (CEIL_DIV(rows, int64_t(kLnWarps)) >= (int64_t(1) << 31))
    fail(L2D_ERR_UNSUPPORTED, "layer_norm: ", rows, " rows is too many for the CUDA kernels");
  if (fp16) ln_dispatch<__half, 8>(x, gamma, beta, y, rows, C, eps, stream);
  else ln_dispatch<float, 4>(x, gamma, beta, y, rows, C, eps, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
