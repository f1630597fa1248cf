// temporal_attention.cuh: streaming temporal attention over the KV-cache ring, in place, with
// every slot load issued up front as 16-byte vectors (see temporal_attention.cu).
#pragma once

#include <cuda_runtime.h>

#include "attention.cuh"  // StreamAttnArgs

namespace l2d::cuda {

// True when the vectorised kernel takes this problem: a window of 16 slots (Live2Diff's), head
// dim, channels and the q/k/v row stride ld_in in whole 16-byte chunks, at most 384 chunks per
// pixel, 16-byte aligned tensors.
bool temporal_vec_supported(const StreamAttnArgs& a, bool fp16);

// Same contract as stream_temporal_attention_cuda; call only when temporal_vec_supported holds.
void temporal_vec_cuda(const StreamAttnArgs& a, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
