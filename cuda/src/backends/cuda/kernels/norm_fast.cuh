// norm_fast.cuh: the fast GroupNorm(+SiLU) and LayerNorm kernels (L2D_NORM=fast); the simple ones
// in norm.cuh stay the verified fallback. Statistics in fp32 with a numerically safe combine
// (per-chunk Welford/Chan, never E[x^2] - E[x]^2), 16-byte vector loads and stores where the
// shape and the pointers allow it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

// How a group norm over x [N, C, S] is cut: each (n, group) slab of cg * S contiguous elements is
// split into `chunks` chunks of `chunk_vecs` vectors of `vec` elements, one CTA per chunk, so the
// grid (slabs * chunks CTAs) fills the GPU even when N * groups is 32..96.
struct GroupNormPlan {
  int64_t slabs = 0;       // N * groups
  int64_t slab_elems = 0;  // cg * S
  int64_t chunk_vecs = 0;  // vectors per chunk (the last chunk of a slab may be shorter)
  int64_t chunks = 0;      // chunks per slab
  int vec = 1;             // elements per vector: 8 (fp16) / 4 (fp32) when S and the pointers allow, else 1
  // Nothing to normalise (no group, or empty groups).
  bool empty() const { return slabs == 0 || slab_elems == 0; }
  // Floats of device scratch the plan needs: (mean, M2) per chunk; none when a slab is one chunk
  // (then one kernel does both passes).
  int64_t scratch_floats() const { return chunks > 1 ? slabs * chunks * 2 : 0; }
  // The same for group_norm_tokens_fast_cuda, which always runs the statistics pass.
  int64_t tokens_scratch_floats() const { return slabs * chunks * 2; }
};

// The plan for this problem on a GPU with `sms` multiprocessors (x and y decide the vector width).
GroupNormPlan group_norm_fast_plan(const void* x, const void* y, int64_t N, int64_t C, int64_t S, int groups, bool fp16,
                                   int sms);

// Two kernels: per-chunk (mean, M2) into `scratch` (plan.scratch_floats() floats), then each CTA
// combines its slab's partials and writes its chunk normalised, gamma/beta (+ SiLU) fused. A slab
// of one chunk: one kernel, one CTA per slab (scratch unused, may be null).
// x/y [N, C, S], gamma/beta [C] (storage type: __half when fp16, else float).
void group_norm_fast_cuda(const GroupNormPlan& plan, const void* x, const void* gamma, const void* beta, void* y,
                          int64_t C, int64_t S, int groups, float eps, bool silu, bool fp16, float* scratch,
                          cudaStream_t stream);

// The same normalisation written as tokens: x [N, C, S] -> y [N, S, C] (Backend::group_norm_tokens).
// The statistics pass as above (also for slabs of one chunk), then a tiled apply pass that merges
// the statistics it needs and transposes through shared memory, so reads and writes stay coalesced.
// scratch: plan.tokens_scratch_floats() floats. Throws L2D_ERR_UNSUPPORTED past the grid limits
// (N > 65535 images).
void group_norm_tokens_fast_cuda(const GroupNormPlan& plan, const void* x, const void* gamma, const void* beta,
                                 void* y, int64_t N, int64_t C, int64_t S, int groups, float eps, bool silu, bool fp16,
                                 float* scratch, cudaStream_t stream);

// Whether the fast layer norm takes this problem: C a multiple of the vector width (8 fp16 / 4 fp32),
// every pointer 16-byte aligned, C <= 4096 (fp16) / 2048 (fp32) (the row lives in registers).
bool layer_norm_fast_supported(const void* x, const void* gamma, const void* beta, const void* y, int64_t C, bool fp16);

// One warp per row, the row held in registers: one read and one write of the tensor.
// x/y [rows, C], gamma/beta [C].
void layer_norm_fast_cuda(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t C,
                          float eps, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
