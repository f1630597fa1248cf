// Streaming temporal attention over the KV-cache ring [R, 2, P, W, C], in place.
//
// The op is memory-bound: per pixel it reads W = 16 slots of K and V and does ~4 flops per value.
// So each thread owns one 16-byte chunk (8 halves or 4 floats) of one pixel's channels and
// issues its 16 K slot loads at once (skipping the slot being replaced) before any arithmetic,
// then its 16 V slot loads at once before the score reduction: the load latency is paid twice
// per thread, not once per slot, and the K registers are free again when V arrives.
// The new k/v chunk goes into slot update_idx[r] with one 16-byte store each; no cache is copied.
//
// A CTA holds PIX whole pixels (PIX * C / VEC threads, about 128). Scores need the dot product
// over a head's D / VEC chunks, i.e. over consecutive threads:
//   1. every thread writes its 16 partial dots to shared part[s][thread];
//   2. the threads of a head split the 16 slots among themselves and sum the head's partials,
//      writing score[s][first thread of the head] (W + D / VEC shared reads per thread);
//   3. every thread reads its head's 16 scores, does the softmax in registers (bias -inf slots
//      contribute exactly 0; all -inf gives NaN, like the oracle) and combines its V chunks.
//
// q/k/v rows are ld_in elements apart (C, or 3C when they are the column blocks of one packed
// projection: the same bytes are read either way, with no copies in between).
//
// Bytes per call (fp16, 2 bytes a value): 2 R P (W - 1) C values read (the other slots) + 2 R P C
// written (the new slot) + 4 R P C for q, k, v in and y out (+ the L2-resident PE tables), i.e.
// 2 R P C (W + 2) values against a cache of 2 R P W C: (W + 2) / W = 1.125x one read of the cache
// (the floor) at W = 16.
#include <cstdint>

#include "../common.cuh"
#include "temporal_attention.cuh"

namespace l2d::cuda {
namespace {

constexpr int kSlots = 16;             // Live2Diff's window
constexpr int kTargetThreads = 128;    // per CTA: several CTAs per SM at ~170 registers a thread
constexpr int kMaxChunksPerPixel = 384;  // threads per CTA at most; shared: 2 x 16 x 384 floats = 48 KB

template <typename T>
constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte chunk

__device__ __forceinline__ void unpack(const uint4& u, float (&f)[4]) {
  f[0] = __uint_as_float(u.x);
  f[1] = __uint_as_float(u.y);
  f[2] = __uint_as_float(u.z);
  f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack(const uint4& u, float (&f)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}
__device__ __forceinline__ uint4 pack(const float (&f)[4]) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
}
__device__ __forceinline__ uint4 pack(const float (&f)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&h);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <typename T>
static __global__ void __launch_bounds__(kMaxChunksPerPixel) temporal_vec_kernel(const StreamAttnArgs a, int pix_per_cta, float scale) {
  constexpr int VEC = kVec<T>;
  extern __shared__ float tsmem[];
  const int nt = blockDim.x;
  float* part = tsmem;               // [kSlots][nt]
  float* score = tsmem + kSlots * nt;  // [kSlots][nt], column = first thread of a head

  const int C = a.C, D = C / a.heads;
  const int chunks = C / VEC, dv = D / VEC;  // chunks per pixel / per head
  const int tid = threadIdx.x;
  const int pl = tid / chunks, c = tid - pl * chunks;
  const int h = c / dv, j = c - h * dv;        // head, chunk within the head
  const int head0 = pl * chunks + h * dv;      // first thread of this head
  const int64_t rp = int64_t(blockIdx.x) * pix_per_cta + pl;
  const bool live = rp < int64_t(a.R) * a.P;   // dead threads still take part in the barriers
  const int r = live ? int(rp / a.P) : 0, p = live ? int(rp % a.P) : 0;

  const int32_t* pidx = a.pe_idx + int64_t(r) * kSlots;
  int slot = a.update_idx[r];
  const bool slot_ok = slot >= 0 && slot < kSlots;
  if (!slot_ok) {
    if (live && c == 0) report_error(a.err, kErrStreamUpdateIdx, slot, kSlots);
    slot = slot < 0 ? 0 : kSlots - 1;
  }
  // PE rows are re-read from pe_idx (L1-resident, 16 ints per row) where they are needed rather
  // than held in 16 registers; out-of-range indices are clamped, and reported from this pass.
  auto pe_row = [&](int s) {
    const int v = pidx[s];
    return v < 0 ? 0 : (v >= a.max_len ? a.max_len - 1 : v);
  };
  if (live && c == 0) {
    for (int s = 0; s < kSlots; ++s)
      if (pidx[s] < 0 || pidx[s] >= a.max_len) report_error(a.err, kErrStreamPeIdx, pidx[s], a.max_len);
  }

  const int64_t off = int64_t(c) * VEC;  // this thread's channels within a pixel row of C
  T* ck = static_cast<T*>(a.cache) + ((int64_t(r) * 2 + 0) * a.P + p) * int64_t(kSlots) * C + off;
  T* cv = static_cast<T*>(a.cache) + ((int64_t(r) * 2 + 1) * a.P + p) * int64_t(kSlots) * C + off;
  const int64_t io = rp * a.ld_in + off;  // q/k/v (row stride ld_in)
  const int64_t yo = rp * C + off;        // y

  // All K slot loads first (streaming: each cache value is read once per frame).
  uint4 kr[kSlots], vr[kSlots];
  uint4 qn = make_uint4(0, 0, 0, 0), kn = qn, vn = qn;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) kr[s] = vr[s] = qn;
  if (live) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
      if (s != slot) kr[s] = __ldcs(reinterpret_cast<const uint4*>(ck + int64_t(s) * C));
    qn = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(a.q) + io));
    kn = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(a.k) + io));
    vn = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(a.v) + io));
    if (slot_ok) {  // an invalid slot leaves the cache untouched (the error is reported)
      *reinterpret_cast<uint4*>(ck + int64_t(slot) * C) = kn;
      *reinterpret_cast<uint4*>(cv + int64_t(slot) * C) = vn;
    }
  }

  const T* qpe = static_cast<const T*>(a.qpe) + off;
  const T* kpe = static_cast<const T*>(a.kpe) + off;
  const T* vpe = static_cast<const T*>(a.vpe) + off;
  float qf[VEC];
  {
    float x[VEC], pq[VEC];
    unpack(qn, x);
    unpack(__ldg(reinterpret_cast<const uint4*>(qpe + int64_t(pe_row(slot)) * C)), pq);
#pragma unroll
    for (int e = 0; e < VEC; ++e) qf[e] = x[e] + pq[e];
  }

  // 1. partial dots of this chunk, per slot.
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    float kx[VEC], kp[VEC];
    unpack(s == slot ? kn : kr[s], kx);
    unpack(__ldg(reinterpret_cast<const uint4*>(kpe + int64_t(pe_row(s)) * C)), kp);
    float dot = 0.f;
#pragma unroll
    for (int e = 0; e < VEC; ++e) dot = fmaf(qf[e], kx[e] + kp[e], dot);
    part[s * nt + tid] = dot;
  }
  // All V slot loads, now that the K registers are free: they land during the score reduction.
  if (live) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
      if (s != slot) vr[s] = __ldcs(reinterpret_cast<const uint4*>(cv + int64_t(s) * C));
  }
  __syncthreads();
  // 2. the head's threads share out the slots: thread j sums slots j, j + dv, ...
  for (int s = j; s < kSlots; s += dv) {
    float sum = 0.f;
    for (int i = 0; i < dv; ++i) sum += part[s * nt + head0 + i];
    score[s * nt + head0] = sum;
  }
  __syncthreads();
  if (!live) return;  // no barrier follows

  // 3. softmax over the slots and the weighted V chunks.
  const T* bias = static_cast<const T*>(a.bias) + int64_t(r) * kSlots;
  float sc[kSlots];
  float m = -INFINITY;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    sc[s] = score[s * nt + head0] * scale + to_f(bias[s]);
    m = fmaxf(m, sc[s]);
  }
  float acc[VEC], l = 0.f;
#pragma unroll
  for (int e = 0; e < VEC; ++e) acc[e] = 0.f;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    if (sc[s] == -INFINITY) continue;  // exp(-inf - m) == 0: the slot contributes nothing
    const float w = expf(sc[s] - m);
    l += w;
    float vx[VEC], vp[VEC];
    unpack(s == slot ? vn : vr[s], vx);
    unpack(__ldg(reinterpret_cast<const uint4*>(vpe + int64_t(pe_row(s)) * C)), vp);
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = fmaf(w, vx[e] + vp[e], acc[e]);
  }
  const float inv = 1.f / l;  // l == 0 only if every slot is -inf: NaN, like the oracle
#pragma unroll
  for (int e = 0; e < VEC; ++e) acc[e] *= inv;
  *reinterpret_cast<uint4*>(static_cast<T*>(a.y) + yo) = pack(acc);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool temporal_vec_supported(const StreamAttnArgs& a, bool fp16) {
  const int vec = fp16 ? kVec<__half> : kVec<float>;
  if (a.W != kSlots || a.heads <= 0 || a.C % a.heads != 0) return false;
  const int D = a.C / a.heads;
  if (D % vec != 0 || a.C / vec > kMaxChunksPerPixel) return false;
  if (a.ld_in < a.C || a.ld_in % vec != 0) return false;  // every q/k/v row starts on a 16-byte chunk
  for (const void* p : {a.q, a.k, a.v, a.qpe, a.kpe, a.vpe, static_cast<const void*>(a.cache),
                        static_cast<const void*>(a.y)})
    if (!aligned16(p)) return false;
  return true;
}

void temporal_vec_cuda(const StreamAttnArgs& a, bool fp16, cudaStream_t stream) {
  if (int64_t(a.R) * a.P == 0) return;
  L2D_ASSERT(temporal_vec_supported(a, fp16) && a.max_len > 0);
  const int chunks = a.C / (fp16 ? kVec<__half> : kVec<float>);
  const int pix = chunks >= kTargetThreads ? 1 : kTargetThreads / chunks;
  const int threads = pix * chunks;
  const size_t smem = sizeof(float) * 2 * kSlots * size_t(threads);
  const unsigned blocks = unsigned(CEIL_DIV(int64_t(a.R) * a.P, int64_t(pix)));
  const float scale = 1.f / sqrtf(float(a.C / a.heads));
  if (fp16) temporal_vec_kernel<__half><<<blocks, threads, smem, stream>>>(a, pix, scale);
  else temporal_vec_kernel<float><<<blocks, threads, smem, stream>>>(a, pix, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
