// gemm_tc.cuh: the "own" tensor-core GEMM (fp16 in, fp32 accumulate), for linear, matmul and NCHW
// implicit-GEMM convolutions. Same problem description as the simple kernel (GemmParams), a faster
// construction: a multi-stage cp.async pipeline, ldmatrix + mma.sync m16n8k16, 128x128 / 128x64 tiles,
// split-K with a deterministic fp32 reduction for problems that would not fill the GPU.
// Only the cases listed in gemm_tc_supported() take this path; everything else stays on gemm_cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gemm.cuh"

namespace l2d::cuda {

// True when gemm_tc_cuda handles p: fp16 storage, A row-major [M, K] (no trans_a), dense epilogue,
// 16-byte aligned operand rows for the cp.async loaders (K % 8 == 0; N % 8 == 0 for a [K, N] B), any
// im2col geometry (B is gathered through registers there); a residual only with a [N, K] B (linear_add);
// the GEGLU epilogue (kEpiGeglu, linear_geglu) with a [2C, K] B, C % 8 == 0, no residual.
bool gemm_tc_supported(const GemmParams& p);

// How gemm_tc_cuda will split K for p (1 = no split) and the fp32 workspace it then needs, in floats
// (splits * batch * M * N; 0 when splits == 1). The caller allocates it stream-ordered.
struct TcPlan {
  int splits = 1;
  int bn = 128;     // tile width in N: 128 or 64
  int kt_per = 1;   // BK-slices per split
  int64_t workspace_floats = 0;
};
TcPlan gemm_tc_plan(const GemmParams& p);

// Runs p (gemm_tc_supported(p) must hold) with plan (from gemm_tc_plan(p)); workspace: plan's floats.
void gemm_tc_cuda(const GemmParams& p, const TcPlan& plan, float* workspace, cudaStream_t stream);

}  // namespace l2d::cuda
