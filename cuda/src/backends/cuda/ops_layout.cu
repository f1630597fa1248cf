// Layout-fused ops of the CUDA backend (fusions_.layout, L2D_FUSE "layout"): a transformer's output
// projection written straight into the image layout. (Its input side, GroupNorm written as tokens,
// is group_norm_tokens in ops_misc.cu.)
#include <string>

#include "backend_cuda.h"
#include "common.cuh"
#include "dense_router.h"
#include "kernels/gemm.cuh"

namespace l2d::cuda {

// linear(t, w, bias) viewed as [N, h, w, O] and permuted to NCHW is, per image n, the product
// y_n [O, P] = w [O, K] @ t_n^T: one GEMM batched over n with the roles swapped (A = the weight,
// row-major; B = the image's tokens in the [N, K] layout, i.e. B(k, p) = t_n[p, k]), the bias per
// output row (kBiasPerM) and the residual laid out like C (NCHW) in the epilogue. So the output is
// written once, in place of linear + permute + Add (three passes). The router runs it on the simple
// or own kernel; there is no cuBLASLt form (its bias epilogue is per column of our row-major C).
Tensor CudaBackend::linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                    int64_t height, int64_t width) {
  L2D_ASSERT(t.ndim() == 3 && w.ndim() == 2 && t.dim(2) == w.dim(1) && t.dim(1) == height * width);
  const int64_t N = t.dim(0), P = t.dim(1), K = t.dim(2), O = w.dim(0);
  // Past the kernels' grid limits (batch, the simple kernel's P tiles, the own kernel's O tiles) and
  // for empty sums: the composition, whose linear has the limits of any other linear.
  if (!fusions_.layout || N > 65535 || P > int64_t(65535) * 64 || O > int64_t(65535) * 128 || K == 0)
    return Backend::linear_to_image(t, w, bias, residual, height, width);
  L2D_ASSERT(t.dtype() == float_dtype() && w.dtype() == float_dtype());
  if (bias) L2D_ASSERT(bias->numel() == O && bias->dtype() == float_dtype());
  Tensor y = empty({N, O, height, width});
  if (residual) L2D_ASSERT(residual->shape() == y.shape() && residual->dtype() == float_dtype());
  if (y.numel() == 0) return y;
  GemmParams g;
  g.M = O;
  g.N = P;
  g.K = K;
  g.batch = int(N);
  g.A = w.data();
  g.lda = K;
  g.a_bs = 0;  // one weight for every image
  g.B = t.data();
  g.b_mode = kGemmB_NK;
  g.ldb = K;
  g.b_bs = P * K;
  g.C = y.data();
  g.ldc = P;
  g.c_bs = O * P;
  g.bias = bias ? bias->data() : nullptr;
  g.bias_mode = bias ? kBiasPerM : kBiasNone;
  g.residual = residual ? residual->data() : nullptr;
  dense_->gemm(*this, g, nullptr, "linear_to_image");
  return y;
}

}  // namespace l2d::cuda
