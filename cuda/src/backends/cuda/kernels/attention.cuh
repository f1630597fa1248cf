// attention.cuh: fused multi-head attention (flash-style online softmax, never materialises the
// Lq x Lk scores) and the streaming temporal attention over the KV-cache ring.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

struct DeviceError;

// Largest head dim the fused kernel supports (SD 40/80/160, CLIP 64, MiDaS 64).
constexpr int kMaxAttnHeadDim = 160;

// q/y [B, Lq, H*D], k/v [Bk, Lk, H*D] with Bk == B or 1 (broadcast).
void attention_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                    int D, bool causal, bool fp16, cudaStream_t stream);

// See Backend::stream_temporal_attention. cache [R, 2, P, W, C] updated in place.
struct StreamAttnArgs {
  const void *q, *k, *v;
  void* cache;
  const void *qpe, *kpe, *vpe;
  const int32_t* pe_idx;      // [R, W]
  const int32_t* update_idx;  // [R]
  const void* bias;           // [R, W]
  void* y;                    // [R, P, C]
  int R, P, C, W, heads, max_len;
  DeviceError* err;
};
void stream_temporal_attention_cuda(const StreamAttnArgs& a, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
