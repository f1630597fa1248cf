// attention_tc.cuh: FlashAttention-2 style multi-head attention on tensor cores (fp16 storage,
// mma.sync m16n8k16 with fp32 accumulation and fp32 softmax statistics). Same contract as
// attention_cuda (attention.cuh), for the shapes it supports; the simple kernel covers the rest.
#pragma once

#include <cuda_runtime.h>

namespace l2d::cuda {

// True when attention_tc_cuda can run this problem: fp16 storage, head dim a multiple of 8 up to
// 160 (cp.async moves 16-byte chunks of 8 halves), and 16-byte aligned q/k/v/y.
bool attention_tc_supported(const void* q, const void* k, const void* v, const void* y, int D, bool fp16);

// q/y [B, Lq, H*D], k/v [Bk, Lk, H*D] with Bk == B or 1 (broadcast); fp16 (__half) storage.
// Call only when attention_tc_supported(...) holds.
void attention_tc_cuda(const void* q, const void* k, const void* v, void* y, int B, int Lq, int Lk, int Bk, int heads,
                       int D, bool causal, cudaStream_t stream);

}  // namespace l2d::cuda
