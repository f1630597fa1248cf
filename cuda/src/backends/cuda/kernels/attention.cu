// Fused attention, fp32 math on either storage type.
//
// attention_kernel: grid (ceil(Lq / 32), heads, B); 8 warps, each owning 4 consecutive queries.
// Per key tile of 32 keys (staged in shared memory as fp32, K rows padded to D+1 floats so lane j
// reading key j is conflict-free): lane j computes the 4 scores q_i . k_j (q broadcast from shared
// memory as a float4 over the 4 queries), the warp does the online-softmax bookkeeping with
// shuffles (running max m, sum l, both fp32; masked keys are -inf and contribute exactly 0), then
// every lane accumulates its output dims d = lane + 32c against the 32 probabilities. Causal
// blocks stop at their last query. Output = o / l.
//
// stream_temporal_kernel: one warp per (row, pixel, head), lanes over the head dims. The new k/v
// go into cache slot update_idx[r] first (in place; the warp uses its registers for that slot),
// then an online softmax over the W slots with the PE gathers and the additive bias (-inf slots
// are skipped, i.e. contribute exactly 0 as in the oracle).
#include <atomic>

#include "../common.cuh"
#include "attention.cuh"

namespace l2d::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kQPerWarp = 4;
constexpr int kQTile = kWarps * kQPerWarp;  // 32 queries per block
constexpr int kKTile = 32;                  // keys per shared tile (one per lane)

// Dynamic shared memory layout (floats):
//   sQ [kWarps][D][4]      queries of each warp, interleaved so one float4 load gives d for all 4
//   sK [kKTile][D + 1]
//   sV [kKTile][D]
//   sP [kWarps][kKTile][4] probabilities of the current tile
inline size_t attn_smem_bytes(int D) {
  return sizeof(float) * (size_t(kWarps) * D * kQPerWarp + size_t(kKTile) * (D + 1) + size_t(kKTile) * D +
                          size_t(kWarps) * kKTile * kQPerWarp);
}

template <typename T, int DC>  // DC = ceil(D / 32) output dims per lane
static __global__ void __launch_bounds__(kWarps * 32, 2)
    attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ y,
                     int Lq, int Lk, int Bk, int heads, int D, AttnLd ld, bool causal, float scale) {
  extern __shared__ __align__(16) float smem[];
  float* sQ = smem;
  float* sK = sQ + kWarps * D * kQPerWarp;
  float* sV = sK + kKTile * (D + 1);
  float* sP = sV + kKTile * D;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int b = blockIdx.z, h = blockIdx.y;
  const int q_block0 = blockIdx.x * kQTile;
  const int q0 = q_block0 + warp * kQPerWarp;  // this warp's first query
  const int64_t HD = int64_t(heads) * D;  // y rows
  const T* qb = q + (int64_t(b) * Lq) * ld.q + int64_t(h) * D;
  const int bk = Bk == 1 ? 0 : b;
  const T* kb = k + (int64_t(bk) * Lk) * ld.kv + int64_t(h) * D;
  const T* vb = v + (int64_t(bk) * Lk) * ld.kv + int64_t(h) * D;

  // Stage this warp's queries (0 past Lq; those rows are computed but never stored).
  float* sQw = sQ + warp * D * kQPerWarp;
  for (int e = lane; e < D * kQPerWarp; e += 32) {
    const int d = e / kQPerWarp, i = e % kQPerWarp;
    const int qi = q0 + i;
    sQw[e] = qi < Lq ? to_f(qb[int64_t(qi) * ld.q + d]) : 0.f;
  }

  float m[kQPerWarp], l[kQPerWarp], o[kQPerWarp][DC];
#pragma unroll
  for (int i = 0; i < kQPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < DC; ++c) o[i][c] = 0.f;
  }

  // Causal: keys beyond the block's last query are masked for every query of the block.
  const int k_end = causal ? min(Lk, q_block0 + kQTile) : Lk;
  float* sPw = sP + warp * kKTile * kQPerWarp;

  for (int t0 = 0; t0 < k_end; t0 += kKTile) {
    __syncthreads();  // previous tile fully consumed
    for (int e = tid; e < kKTile * D; e += kWarps * 32) {
      const int j = e / D, d = e - j * D;
      const int kk = t0 + j;
      float kv = 0.f, vv = 0.f;
      if (kk < Lk) {
        kv = to_f(kb[int64_t(kk) * ld.kv + d]);
        vv = to_f(vb[int64_t(kk) * ld.kv + d]);
      }
      sK[j * (D + 1) + d] = kv;
      sV[j * D + d] = vv;
    }
    __syncthreads();

    // Scores: lane = key j of the tile.
    float s[kQPerWarp];
#pragma unroll
    for (int i = 0; i < kQPerWarp; ++i) s[i] = 0.f;
    const float* kr = sK + lane * (D + 1);
    const float4* q4 = reinterpret_cast<const float4*>(sQw);
    for (int d = 0; d < D; ++d) {
      const float kd = kr[d];
      const float4 qq = q4[d];
      s[0] = fmaf(qq.x, kd, s[0]);
      s[1] = fmaf(qq.y, kd, s[1]);
      s[2] = fmaf(qq.z, kd, s[2]);
      s[3] = fmaf(qq.w, kd, s[3]);
    }
    const int kj = t0 + lane;
#pragma unroll
    for (int i = 0; i < kQPerWarp; ++i) {
      const bool valid = kj < Lk && (!causal || kj <= q0 + i);
      s[i] = valid ? s[i] * scale : -INFINITY;
      const float m_new = fmaxf(m[i], warp_max(s[i]));
      float p, alpha;
      if (m_new == -INFINITY) {  // nothing valid yet for this query
        p = 0.f;
        alpha = 1.f;
      } else {
        p = s[i] == -INFINITY ? 0.f : expf(s[i] - m_new);
        alpha = m[i] == -INFINITY ? 0.f : expf(m[i] - m_new);
      }
      l[i] = l[i] * alpha + warp_sum(p);
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < DC; ++c) o[i][c] *= alpha;
      sPw[lane * kQPerWarp + i] = p;
    }
    __syncwarp();

    // o += P V: lane owns dims lane + 32c.
    const int jmax = min(kKTile, k_end - t0);
    const float4* p4 = reinterpret_cast<const float4*>(sPw);
    for (int j = 0; j < jmax; ++j) {
      const float4 pp = p4[j];
      const float* vr = sV + j * D;
#pragma unroll
      for (int c = 0; c < DC; ++c) {
        const int d = lane + 32 * c;
        const float vd = d < D ? vr[d] : 0.f;
        o[0][c] = fmaf(pp.x, vd, o[0][c]);
        o[1][c] = fmaf(pp.y, vd, o[1][c]);
        o[2][c] = fmaf(pp.z, vd, o[2][c]);
        o[3][c] = fmaf(pp.w, vd, o[3][c]);
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int i = 0; i < kQPerWarp; ++i) {
    const int qi = q0 + i;
    if (qi >= Lq) continue;
    const float inv = 1.f / l[i];
    T* yr = y + (int64_t(b) * Lq + qi) * HD + int64_t(h) * D;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) yr[d] = from_f<T>(o[i][c] * inv);
    }
  }
}

template <typename T, int DC>
void launch_attn(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads, int D,
                 AttnLd ld, bool causal, cudaStream_t s) {
  const size_t smem = attn_smem_bytes(D);
  // Above 48 KB a kernel must opt in, once per device (the attribute call is idempotent, so the
  // race between two threads setting the same bit is benign).
  static std::atomic<uint64_t> configured{0};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (!(configured.load() & bit)) {
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<T, DC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(attn_smem_bytes(32 * DC))));
    configured |= bit;
  }
  const dim3 grid(unsigned(CEIL_DIV(Lq, kQTile)), unsigned(heads), unsigned(B));
  attention_kernel<T, DC><<<grid, kWarps * 32, smem, s>>>(static_cast<const T*>(q), static_cast<const T*>(k),
                                                          static_cast<const T*>(v), static_cast<T*>(y), Lq, Lk, Bk,
                                                          heads, D, ld, causal, 1.f / sqrtf(float(D)));
}

template <typename T>
void attn_t(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads, int D,
            AttnLd ld, bool causal, cudaStream_t s) {
  switch (CEIL_DIV(D, 32)) {
    case 1: launch_attn<T, 1>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, s); break;
    case 2: launch_attn<T, 2>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, s); break;
    case 3: launch_attn<T, 3>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, s); break;
    case 4: launch_attn<T, 4>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, s); break;
    default: launch_attn<T, 5>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, s); break;
  }
}

// ---- streaming temporal attention ----

constexpr int kStreamWarps = 8;

template <typename T, int DC>
static __global__ void __launch_bounds__(kStreamWarps * 32) stream_temporal_kernel(const StreamAttnArgs a, float scale) {
  const int64_t wg = int64_t(blockIdx.x) * kStreamWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int64_t total = int64_t(a.R) * a.P * a.heads;
  if (wg >= total) return;  // whole warp
  const int h = int(wg % a.heads);
  const int64_t rp = wg / a.heads;  // r * P + p
  const int r = int(rp / a.P), p = int(rp % a.P);
  const int C = a.C, W = a.W, D = C / a.heads;

  const T* q = static_cast<const T*>(a.q);
  const T* kin = static_cast<const T*>(a.k);
  const T* vin = static_cast<const T*>(a.v);
  const T* qpe = static_cast<const T*>(a.qpe);
  const T* kpe = static_cast<const T*>(a.kpe);
  const T* vpe = static_cast<const T*>(a.vpe);
  const T* bias = static_cast<const T*>(a.bias);
  T* cache = static_cast<T*>(a.cache);
  T* ck = cache + ((int64_t(r) * 2 + 0) * a.P + p) * int64_t(W) * C + int64_t(h) * D;  // slot s at + s*C
  T* cv = cache + ((int64_t(r) * 2 + 1) * a.P + p) * int64_t(W) * C + int64_t(h) * D;
  const int32_t* pidx = a.pe_idx + int64_t(r) * W;

  int slot = a.update_idx[r];
  const bool slot_ok = slot >= 0 && slot < W;
  if (!slot_ok) {
    if (lane == 0) report_error(a.err, kErrStreamUpdateIdx, slot, W);
    slot = slot < 0 ? 0 : W - 1;
  }
  auto pe_row = [&](int s) -> int64_t {
    int pi = pidx[s];
    if (pi < 0 || pi >= a.max_len) {
      if (lane == 0) report_error(a.err, kErrStreamPeIdx, pi, a.max_len);
      pi = pi < 0 ? 0 : a.max_len - 1;
    }
    return int64_t(pi) * C + int64_t(h) * D;
  };

  const int64_t io = rp * a.ld_in + int64_t(h) * D;  // q/k/v (row stride ld_in)
  const int64_t yo = rp * C + int64_t(h) * D;        // y
  float qv[DC], kn[DC], vn[DC], acc[DC];
  {
    const int64_t qpr = pe_row(slot);
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = lane + 32 * c;
      qv[c] = kn[c] = vn[c] = acc[c] = 0.f;
      if (d < D) {
        qv[c] = to_f(q[io + d]) + to_f(qpe[qpr + d]);
        const T kt = kin[io + d], vt = vin[io + d];
        kn[c] = to_f(kt);
        vn[c] = to_f(vt);
        if (slot_ok) {  // an invalid slot leaves the cache untouched (the error is reported)
          ck[int64_t(slot) * C + d] = kt;
          cv[int64_t(slot) * C + d] = vt;
        }
      }
    }
  }

  float m = -INFINITY, l = 0.f;
  for (int s = 0; s < W; ++s) {
    const int64_t per = pe_row(s);
    float dot = 0.f;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        const float kc = s == slot ? kn[c] : to_f(ck[int64_t(s) * C + d]);
        dot = fmaf(qv[c], kc + to_f(kpe[per + d]), dot);
      }
    }
    const float score = warp_sum(dot) * scale + to_f(bias[int64_t(r) * W + s]);
    if (score == -INFINITY) continue;  // exp(-inf - m) == 0: the slot contributes nothing
    const float m_new = fmaxf(m, score);
    const float alpha = m == -INFINITY ? 0.f : expf(m - m_new);
    const float pw = expf(score - m_new);
    l = l * alpha + pw;
    m = m_new;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        const float vc = s == slot ? vn[c] : to_f(cv[int64_t(s) * C + d]);
        acc[c] = acc[c] * alpha + pw * (vc + to_f(vpe[per + d]));
      }
    }
  }
  T* yr = static_cast<T*>(a.y) + yo;
  const float inv = 1.f / l;  // l == 0 only if every slot is -inf: NaN, like the oracle
#pragma unroll
  for (int c = 0; c < DC; ++c) {
    const int d = lane + 32 * c;
    if (d < D) yr[d] = from_f<T>(acc[c] * inv);
  }
}

template <typename T>
void stream_t(const StreamAttnArgs& a, cudaStream_t s) {
  const int D = a.C / a.heads;
  const int64_t warps = int64_t(a.R) * a.P * a.heads;
  const unsigned blocks = unsigned(CEIL_DIV(warps, int64_t(kStreamWarps)));
  const float scale = 1.f / sqrtf(float(D));
  switch (CEIL_DIV(D, 32)) {
    case 1: stream_temporal_kernel<T, 1><<<blocks, kStreamWarps * 32, 0, s>>>(a, scale); break;
    case 2: stream_temporal_kernel<T, 2><<<blocks, kStreamWarps * 32, 0, s>>>(a, scale); break;
    case 3: stream_temporal_kernel<T, 3><<<blocks, kStreamWarps * 32, 0, s>>>(a, scale); break;
    case 4: stream_temporal_kernel<T, 4><<<blocks, kStreamWarps * 32, 0, s>>>(a, scale); break;
    default: stream_temporal_kernel<T, 5><<<blocks, kStreamWarps * 32, 0, s>>>(a, scale); break;
  }
}

}  // namespace

void attention_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                    int D, AttnLd ld, bool causal, bool fp16, cudaStream_t stream) {
  if (B <= 0 || Lq <= 0) return;
  if (D < 1 || D > kMaxAttnHeadDim)
    fail(L2D_ERR_UNSUPPORTED, "CUDA attention supports head dims 1..", kMaxAttnHeadDim, ", got ", D);
  L2D_ASSERT(Lk > 0 && heads <= 65535 && B <= 65535);
  L2D_ASSERT(ld.q >= int64_t(heads) * D && ld.kv >= int64_t(heads) * D);
  if (fp16) attn_t<__half>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  else attn_t<float>(q, k, v, y, B, Lq, Lk, Bk, heads, D, ld, causal, stream);
  CUDA_CHECK_LAUNCH();
}

void stream_temporal_attention_cuda(const StreamAttnArgs& a, bool fp16, cudaStream_t stream) {
  if (int64_t(a.R) * a.P == 0) return;
  const int D = a.C / a.heads;
  if (D < 1 || D > kMaxAttnHeadDim)
    fail(L2D_ERR_UNSUPPORTED, "CUDA temporal attention supports head dims 1..", kMaxAttnHeadDim, ", got ", D);
  L2D_ASSERT(a.W > 0 && a.max_len > 0 && a.ld_in >= a.C);
  if (fp16) stream_t<__half>(a, stream);
  else stream_t<float>(a, stream);
  CUDA_CHECK_LAUNCH();
}

}  // namespace l2d::cuda
