// attention_tc.cuh: FlashAttention-2 style multi-head attention on tensor cores (fp16 storage,
// mma.sync m16n8k16 with fp32 accumulation and fp32 softmax statistics). Same contract as
// attention_cuda (attention.cuh), for the shapes it supports; the simple kernel covers the rest.
#pragma once

#include <cuda_runtime.h>

#include "attention.cuh"  // AttnLd

namespace l2d::cuda {

// True when attention_tc_cuda can run this problem: fp16 storage, head dim a multiple of 8 up to
// 160 (cp.async moves 16-byte chunks of 8 halves), row strides in whole 16-byte chunks
// (ld % 8 == 0) and 16-byte aligned q/k/v/y.
bool attention_tc_supported(const void* q, const void* k, const void* v, const void* y, int D, AttnLd ld,
                            bool fp16);

// q [B, Lq, *], k/v [Bk, Lk, *] with row strides ld (attention_cuda's contract), Bk == B or 1
// (broadcast), y [B, Lq, H*D]; fp16 (__half) storage. Call only when attention_tc_supported holds.
void attention_tc_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                       int D, AttnLd ld, bool causal, cudaStream_t stream);

}  // namespace l2d::cuda
