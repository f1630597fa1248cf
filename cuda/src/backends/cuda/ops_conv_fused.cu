// Convolutions of the CUDA backend: conv2d and conv2d_fused (conv + bias per channel + bias per image
// + residual) as one implicit GEMM (kernels/gemm.cuh) whose epilogue adds the bias (bias_bs = O for
// a [N, O] bias: one row per image) and the residual (laid out like the output) before the one
// rounding to the storage type, and, where cuDNN can express it (symmetric padding), as a cuDNN
// convolution followed by its AddTensor passes. The DenseRouter (dense_router.h) picks the path.
// L2D_FUSE without conv_epilogue: conv2d_fused is the Backend default (conv2d, then binary Adds).
#include <string>

#include "backend_cuda.h"
#include "common.cuh"
#include "dense_router.h"
#include "kernels/gemm.cuh"
#include "ops_util.h"

namespace l2d::cuda {

Tensor CudaBackend::conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                                 const Tensor* residual, const Conv2dParams& p) {
  if (!fusions_.conv_epilogue) return Backend::conv2d_fused(x, w, bias, image_bias, residual, p);
  L2D_ASSERT(w.ndim() == 4);
  const int64_t O = w.dim(0);
  if (image_bias) L2D_ASSERT(image_bias->ndim() == 2 && image_bias->dim(1) == O);
  if (bias && image_bias) {
    // Both biases become one [rows, O] bias first (rows x O elements, one small launch: the resnet's
    // conv1.b + time embedding), so the GEMM epilogue reads one bias value per output row.
    L2D_ASSERT(bias->numel() == O);
    const Tensor both = binary(*image_bias, bias->reshape({1, O}), Binary::Add);
    return conv2d_impl(x, w, &both, residual, p);
  }
  return conv2d_impl(x, w, image_bias ? image_bias : bias, residual, p);
}

// Implicit GEMM per image: y[n] [O, Ho*Wo] = w [O, C*KH*KW] @ im2col(x[n]) + bias (per row: bias[o],
// from a bias [O] or [1, O], or bias[n, o] from a bias [N, O]) + residual[n].
Tensor CudaBackend::conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                const Conv2dParams& p) {
  L2D_ASSERT(x.ndim() == 4 && w.ndim() == 4 && x.dim(1) == w.dim(1));
  L2D_ASSERT(x.dtype() == float_dtype() && w.dtype() == float_dtype());
  L2D_ASSERT(p.stride_h >= 1 && p.stride_w >= 1 && p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 &&
             p.pad_right >= 0);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), KH = w.dim(2), KW = w.dim(3);
  const int64_t Ho = (H + p.pad_top + p.pad_bottom - KH) / p.stride_h + 1;
  const int64_t Wo = (W + p.pad_left + p.pad_right - KW) / p.stride_w + 1;
  L2D_ASSERT(Ho > 0 && Wo > 0);
  const bool bias_per_image = bias && bias->ndim() == 2 && bias->dim(0) != 1;
  if (bias) {
    L2D_ASSERT(bias->dtype() == float_dtype());
    L2D_ASSERT(bias_per_image ? bias->dim(0) == N && bias->dim(1) == O : bias->numel() == O);
  }
  if (residual) L2D_ASSERT(residual->shape() == Shape({N, O, Ho, Wo}) && residual->dtype() == float_dtype());
  Tensor y = empty({N, O, Ho, Wo});
  dim_or_fail(C * H * W, "conv2d input plane");
  GemmParams g;
  g.M = O;
  g.N = Ho * Wo;
  g.K = C * KH * KW;
  g.batch = int(N);
  g.A = w.data();
  g.lda = g.K;
  g.a_bs = 0;
  g.B = x.data();
  g.b_bs = C * H * W;
  const bool pointwise = KH == 1 && KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
                         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
  if (pointwise) {
    g.b_mode = kGemmB_KN;  // x[n] is already [C, H*W]
    g.ldb = H * W;
  } else {
    g.b_mode = kGemmB_Im2col;
    g.conv_C = int(C);
    g.conv_H = int(H);
    g.conv_W = int(W);
    g.conv_KH = int(KH);
    g.conv_KW = int(KW);
    g.conv_sh = p.stride_h;
    g.conv_sw = p.stride_w;
    g.conv_pt = p.pad_top;
    g.conv_pl = p.pad_left;
    g.conv_Wo = int(Wo);
  }
  g.C = y.data();
  g.ldc = Ho * Wo;
  g.c_bs = O * Ho * Wo;
  g.bias = bias ? bias->data() : nullptr;
  g.bias_mode = bias ? kBiasPerM : kBiasNone;
  g.bias_bs = bias_per_image ? O : 0;
  g.residual = residual ? residual->data() : nullptr;
  // cuDNN's legacy API has symmetric padding only (TF "SAME" asymmetric pads stay on our kernels).
  vendor::DnnConv dc;
  const bool symmetric = p.pad_top == p.pad_bottom && p.pad_left == p.pad_right;
  if (symmetric) {
    dc.N = int(dim_or_fail(N, "conv2d batch"));
    dc.C = int(C);
    dc.H = int(H);
    dc.W = int(W);
    dc.O = int(dim_or_fail(O, "conv2d channels"));
    dc.KH = int(KH);
    dc.KW = int(KW);
    dc.pad_h = p.pad_top;
    dc.pad_w = p.pad_left;
    dc.stride_h = p.stride_h;
    dc.stride_w = p.stride_w;
    dc.x = x.data();
    dc.w = w.data();
    dc.bias = g.bias;
    dc.bias_per_image = bias_per_image;
    dc.residual = g.residual;
    dc.y = y.data();
    dc.fp16 = fp16_;
  }
  // Fused forms are counted apart ("conv3x3/64x64+bn+res"): the bench then shows which convs fused.
  const std::string cls = "conv" + std::to_string(KH) + "x" + std::to_string(KW) + "/" + std::to_string(Ho) + "x" +
                          std::to_string(Wo) + (bias_per_image ? "+bn" : "") + (residual ? "+res" : "");
  dense_->conv2d(*this, g, symmetric ? &dc : nullptr, cls);
  return y;
}

}  // namespace l2d::cuda
