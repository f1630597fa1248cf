// Convolutions, linear layers and batched matmul of the CUDA backend: shape checks (the same as
// the CPU oracle's), then the DenseRouter picks the implementation (simple / own / vendor:
// dense_router.h). No host sync; scratch memory only for split-K and vendor workspaces.
// Attention: ops_attention.cu.
#include <algorithm>
#include <string>

#include "backend_cuda.h"
#include "common.cuh"
#include "dense_router.h"
#include "kernels/gemm.cuh"
#include "kernels/gemm_tc.cuh"
#include "ops_util.h"

namespace l2d::cuda {

namespace {

// The cuBLASLt form of a linear / matmul GEMM g (A row-major, B [K, N] or [N, K], dense epilogue,
// bias per column n or none): the same operands, strides, bias and residual.
vendor::LtGemm lt_gemm(const GemmParams& g, bool fp16) {
  L2D_ASSERT(!g.trans_a && g.epilogue == kEpiDense && g.bias_mode != kBiasPerM &&
             (g.b_mode == kGemmB_KN || g.b_mode == kGemmB_NK));
  vendor::LtGemm lt;
  lt.M = g.M;
  lt.N = g.N;
  lt.K = g.K;
  lt.batch = g.batch;
  lt.A = g.A;
  lt.lda = g.lda;
  lt.a_bs = g.a_bs;
  lt.B = g.B;
  lt.ldb = g.ldb;
  lt.b_bs = g.b_bs;
  lt.b_nk = g.b_mode == kGemmB_NK;
  lt.C = g.C;
  lt.ldc = g.ldc;
  lt.c_bs = g.c_bs;
  lt.bias = g.bias;
  lt.residual = g.residual;
  lt.fp16 = fp16;
  return lt;
}

// linear's GEMM: the rows of x [.., K] times w [N, K]^T, bias per column; C (and ldc = N) as the
// output [.., N]; the caller sets C (and the residual or epilogue).
GemmParams linear_params(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t K = x.dim(-1), N = w.dim(0);
  GemmParams g;
  g.M = x.numel() / K;
  g.N = N;
  g.K = K;
  g.A = x.data();
  g.lda = K;
  g.B = w.data();
  g.b_mode = kGemmB_NK;
  g.ldb = K;
  g.ldc = N;
  g.bias = bias ? bias->data() : nullptr;
  g.bias_mode = bias ? kBiasPerN : kBiasNone;
  return g;
}

}  // namespace

// The implicit GEMM (and its cuDNN form) is built by conv2d_impl (ops_conv_fused.cu), shared with conv2d_fused.
Tensor CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
  return conv2d_impl(x, w, bias, nullptr, p);
}

// stride == kernel: T[(o,i,j), (y,x)] = w^T [(o,i,j), c] @ x[n] [c, (y,x)], scattered by the GEMM
// epilogue straight into y[n, o, y*k + i, x*k + j] (+ bias[o]).
Tensor CudaBackend::conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) {
  L2D_ASSERT(x.ndim() == 4 && w.ndim() == 4 && x.dim(1) == w.dim(0) && w.dim(2) == stride && w.dim(3) == stride);
  L2D_ASSERT(x.dtype() == float_dtype() && w.dtype() == float_dtype() && stride >= 1);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(1), k = stride;
  if (bias) L2D_ASSERT(bias->numel() == O && bias->dtype() == float_dtype());
  Tensor y = empty({N, O, H * k, W * k});
  GemmParams g;
  g.M = O * k * k;
  g.N = H * W;
  g.K = C;
  g.batch = int(N);
  g.A = w.data();
  g.trans_a = true;  // w is [C, O*k*k]: A(m, c) = w[c * (O*k*k) + m]
  g.lda = O * k * k;
  g.a_bs = 0;
  g.B = x.data();
  g.b_mode = kGemmB_KN;
  g.ldb = H * W;
  g.b_bs = C * H * W;
  g.C = y.data();
  g.c_bs = O * H * k * W * k;
  g.bias = bias ? bias->data() : nullptr;
  g.epilogue = kEpiConvT;
  g.ct_k = int(k);
  g.ct_H = int(dim_or_fail(H, "conv_transpose2d height"));
  g.ct_W = int(dim_or_fail(W, "conv_transpose2d width"));
  dense_->simple_only(*this, g, "conv_transpose" + std::to_string(k) + "x" + std::to_string(k));
  return y;
}

Tensor CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  return linear_impl(x, w, bias, nullptr);
}

// The residual rides in the GEMM epilogue on every path (simple, own, cuBLASLt with beta = 1), so the
// output is written once instead of written, read and rewritten by a separate Add.
Tensor CudaBackend::linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual) {
  return linear_impl(x, w, bias, &residual);
}

Tensor CudaBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) {
  const int64_t K = x.dim(-1), N = w.dim(0);
  L2D_ASSERT(w.ndim() == 2 && w.dim(1) == K && K > 0);
  L2D_ASSERT(x.dtype() == float_dtype() && w.dtype() == float_dtype());
  if (bias) L2D_ASSERT(bias->numel() == N && bias->dtype() == float_dtype());
  Shape out = x.shape();
  out.back() = N;
  if (residual) L2D_ASSERT(residual->shape() == out && residual->dtype() == float_dtype());
  Tensor y = empty(out);
  GemmParams g = linear_params(x, w, bias);
  g.C = y.data();
  g.residual = residual ? residual->data() : nullptr;
  const vendor::LtGemm lt = lt_gemm(g, fp16_);
  dense_->gemm(*this, g, &lt, residual ? "linear_add" : "linear");
  return y;
}

// The feed-forward's first projection with its GEGLU in the own kernel's epilogue (kEpiGeglu): the
// [M, 2C] intermediate is never written and the output is rounded once. Runs where the router would run
// the linear on the own kernel (tune: where that measures fastest); elsewhere (vendor, simple) the linear
// and the geglu kernel. The composition (Backend::linear_geglu) when the fusion is off (L2D_FUSE), in
// fp32, or when the fused kernel does not take the problem (C % 8 != 0, unaligned operands).
Tensor CudaBackend::linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t K = x.dim(-1), N = w.dim(0), C = N / 2;
  L2D_ASSERT(w.ndim() == 2 && w.dim(1) == K && K > 0 && N % 2 == 0);
  L2D_ASSERT(x.dtype() == float_dtype() && w.dtype() == float_dtype());
  if (bias) L2D_ASSERT(bias->numel() == N && bias->dtype() == float_dtype());
  if (!fusions_.geglu || !fp16_) return Backend::linear_geglu(x, w, bias);
  const GemmParams lin = linear_params(x, w, bias);  // lin.C: the router's [M, 2C] scratch
  GemmParams fused = lin;
  fused.epilogue = kEpiGeglu;
  fused.geglu_c = C;
  fused.ldc = C;
  if (!gemm_tc_supported(fused)) return Backend::linear_geglu(x, w, bias);
  Shape out = x.shape();
  out.back() = C;
  Tensor y = empty(out);
  fused.C = y.data();
  const vendor::LtGemm lt = lt_gemm(lin, fp16_);
  dense_->linear_geglu(*this, fused, lin, &lt, "linear_geglu");
  return y;
}

Tensor CudaBackend::matmul(const Tensor& a, const Tensor& b) {
  L2D_ASSERT(a.ndim() == 3 && b.ndim() == 3 && a.dim(2) == b.dim(1));
  L2D_ASSERT(a.dtype() == float_dtype() && b.dtype() == float_dtype());
  const int64_t Ba = a.dim(0), Bb = b.dim(0), M = a.dim(1), K = a.dim(2), N = b.dim(2);
  L2D_ASSERT(Ba == Bb || Ba == 1 || Bb == 1);
  const int64_t B = std::max(Ba, Bb);
  if (B > 65535) fail(L2D_ERR_UNSUPPORTED, "CUDA matmul supports batches up to 65535, got ", B);
  Tensor y = empty({B, M, N});
  if (K == 0) {  // empty sum
    if (y.bytes()) CUDA_COPY(cudaMemsetAsync(y.data(), 0, y.bytes(), stream_));
    return y;
  }
  GemmParams g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.batch = int(B);
  g.A = a.data();
  g.lda = K;
  g.a_bs = Ba == 1 ? 0 : M * K;
  g.B = b.data();
  g.b_mode = kGemmB_KN;
  g.ldb = N;
  g.b_bs = Bb == 1 ? 0 : K * N;
  g.C = y.data();
  g.ldc = N;
  g.c_bs = M * N;
  const vendor::LtGemm lt = lt_gemm(g, fp16_);
  dense_->gemm(*this, g, &lt, "matmul");
  return y;
}

}  // namespace l2d::cuda
