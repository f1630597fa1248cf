// gemm.cuh: the CUDA backend's one matrix-multiply kernel family, used by linear, matmul, conv2d
// (implicit GEMM: the B operand is gathered im2col-style on the fly, no scratch buffer) and
// conv_transpose2d (stride == kernel: GEMM whose epilogue scatters into the output image).
//   C[z][m, n] = sum_k A[z](m, k) * B[z](k, n) (+ bias) (+ residual[z][m, n]), fp32 accumulation,
// batched over z with per-operand batch strides (0 = broadcast).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

enum GemmBMode : int {
  kGemmB_KN = 0,      // B(k, n) = B[k * ldb + n]
  kGemmB_NK = 1,      // B(k, n) = B[n * ldb + k] (PyTorch Linear weight [N, K])
  kGemmB_Im2col = 2,  // B(k, n) = x[c, oy*sh - pt + kh, ox*sw - pl + kw] (0 outside), k = (c*KH + kh)*KW + kw,
                      // n = oy * Wo + ox; x is the image of batch z (b_bs = C*H*W)
};
enum GemmBias : int { kBiasNone = 0, kBiasPerN = 1, kBiasPerM = 2 };
enum GemmEpilogue : int {
  kEpiDense = 0,    // C[m * ldc + n]
  kEpiConvT = 1,    // m = (o*k + i)*k + j, n = y*W + x -> C[((o*H + y)*k + i)*(W*k) + x*k + j], bias per o
  kEpiGeglu = 2,    // linear_geglu (own kernel only): B = weight [2C, K] (NK), N = 2C, bias per n or none;
                    // C[m * ldc + c] = (D(m, c) + b[c]) * gelu_erf(D(m, C + c) + b[C + c]) for c < geglu_c
};

struct GemmParams {
  int64_t M = 0, N = 0, K = 0;
  int batch = 1;
  const void* A = nullptr;
  int64_t lda = 0, a_bs = 0;
  bool trans_a = false;  // A(m, k) = A[k * lda + m]
  const void* B = nullptr;
  int64_t ldb = 0, b_bs = 0;
  int b_mode = kGemmB_KN;
  // kGemmB_Im2col geometry.
  int conv_C = 0, conv_H = 0, conv_W = 0, conv_KH = 1, conv_KW = 1, conv_sh = 1, conv_sw = 1, conv_pt = 0,
      conv_pl = 0, conv_Wo = 1;
  void* C = nullptr;
  int64_t ldc = 0, c_bs = 0;
  const void* bias = nullptr;
  int bias_mode = kBiasNone;
  // Batch z reads its bias at bias + z * bias_bs (0 = one bias for every z; O for a conv2d_fused bias
  // [N, O], one row per image). kEpiDense only.
  int64_t bias_bs = 0;
  // kEpiDense only: added after the bias, before the one rounding to the storage type (a residual
  // connection). Laid out like C (ldc, c_bs); must not overlap C.
  const void* residual = nullptr;
  int epilogue = kEpiDense;
  int64_t geglu_c = 0;  // kEpiGeglu: C, the output width (N = 2C)
  int ct_k = 1, ct_H = 1, ct_W = 1;  // kEpiConvT geometry
};

// fp16: __half operands on tensor cores (WMMA 16x16x16, fp32 accumulators); else fp32 SIMT.
void gemm_cuda(const GemmParams& p, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
