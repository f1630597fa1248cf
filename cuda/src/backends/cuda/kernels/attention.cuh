// attention.cuh: fused multi-head attention (flash-style online softmax, never materialises the
// Lq x Lk scores) and the streaming temporal attention over the KV-cache ring.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

struct DeviceError;

// Largest head dim the fused kernel supports (SD 40/80/160, CLIP 64, MiDaS 64).
constexpr int kMaxAttnHeadDim = 160;

// Row strides (elements between consecutive tokens) of the attention operands: H*D for separate
// q/k/v tensors, 3*H*D when they are the column blocks of one packed QKV projection.
struct AttnLd {
  int64_t q, kv;  // q rows; k and v rows (the same for both)
};

// q [B, Lq, *] and k/v [Bk, Lk, *] with row strides ld (head h of token i at i * ld + h * D),
// Bk == B or 1 (broadcast); y [B, Lq, H*D] contiguous.
void attention_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                    int D, AttnLd ld, bool causal, bool fp16, cudaStream_t stream);

// See Backend::stream_temporal_attention. cache [R, 2, P, W, C] updated in place. q/k/v rows are
// ld_in elements apart (C, or 3C for the column blocks of a packed projection); y is [R, P, C].
struct StreamAttnArgs {
  const void *q, *k, *v;
  void* cache;
  const void *qpe, *kpe, *vpe;
  const int32_t* pe_idx;      // [R, W]
  const int32_t* update_idx;  // [R]
  const void* bias;           // [R, W]
  void* y;                    // [R, P, C]
  int R, P, C, W, heads, max_len;
  int ld_in;  // row stride of q, k and v in elements (>= C)
  DeviceError* err;
};
void stream_temporal_attention_cuda(const StreamAttnArgs& a, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
