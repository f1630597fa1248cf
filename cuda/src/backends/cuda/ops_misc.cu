// Normalisation, resampling, embedding and reduction ops of the CUDA backend (host side). The norms
// run the simple kernels (kernels/norm.cu) or, under L2D_NORM=fast, kernels/norm_fast.cu.
#include <cstdlib>
#include <cstring>

#include "backend_cuda.h"
#include "common.cuh"
#include "kernels/embedding.cuh"
#include "kernels/norm.cuh"
#include "kernels/norm_fast.cuh"
#include "kernels/reduce.cuh"
#include "kernels/resample.cuh"
#include "ops_util.h"

namespace l2d::cuda {

NormKernel norm_kernel_from_env() {
  const char* env = std::getenv("L2D_NORM");
  if (!env || !*env || std::strcmp(env, "simple") == 0) return NormKernel::Simple;
  if (std::strcmp(env, "fast") == 0) return NormKernel::Fast;
  fail(L2D_ERR_INVALID_ARGUMENT, "L2D_NORM must be \"simple\" or \"fast\", got \"", env, "\"");
}

Tensor CudaBackend::group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                               bool fuse_silu) {
  L2D_ASSERT(x.ndim() >= 2 && groups > 0);
  L2D_ASSERT(x.dtype() == float_dtype() && gamma.dtype() == float_dtype() && beta.dtype() == float_dtype());
  const int64_t N = x.dim(0), C = x.dim(1);
  L2D_ASSERT(C % groups == 0 && gamma.numel() == C && beta.numel() == C);
  const int64_t S = N > 0 && C > 0 ? x.numel() / (N * C) : 0;
  Tensor y = empty(x.shape());
  if (norm_kernel_ == NormKernel::Fast) {
    const GroupNormPlan plan = group_norm_fast_plan(x.data(), y.data(), N, C, S, groups, fp16_, device_sm_count());
    if (plan.empty()) return y;
    // Per-chunk (mean, M2); returned to the pool after the launch (stream order keeps it valid).
    Tensor partials;
    if (plan.scratch_floats() > 0) partials = Tensor(this, DType::F32, {plan.scratch_floats()});
    group_norm_fast_cuda(plan, x.data(), gamma.data(), beta.data(), y.data(), C, S, groups, eps, fuse_silu, fp16_,
                         static_cast<float*>(partials.data()), stream_);
    return y;
  }
  group_norm_cuda(x.data(), gamma.data(), beta.data(), y.data(), N, C, S, groups, eps, fuse_silu, fp16_, stream_);
  return y;
}

Tensor CudaBackend::group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                      bool fuse_silu) {
  if (!fusions_.layout) return Backend::group_norm_tokens(x, groups, gamma, beta, eps, fuse_silu);
  L2D_ASSERT(x.ndim() >= 2 && groups > 0);
  L2D_ASSERT(x.dtype() == float_dtype() && gamma.dtype() == float_dtype() && beta.dtype() == float_dtype());
  const int64_t N = x.dim(0), C = x.dim(1);
  L2D_ASSERT(C % groups == 0 && gamma.numel() == C && beta.numel() == C);
  const int64_t S = N > 0 && C > 0 ? x.numel() / (N * C) : 0;
  Tensor y = empty({N, S, C});
  if (norm_kernel_ == NormKernel::Fast) {
    const GroupNormPlan plan = group_norm_fast_plan(x.data(), y.data(), N, C, S, groups, fp16_, device_sm_count());
    if (plan.empty()) return y;
    Tensor partials(this, DType::F32, {plan.tokens_scratch_floats()});  // back to the pool after the launch
    group_norm_tokens_fast_cuda(plan, x.data(), gamma.data(), beta.data(), y.data(), N, C, S, groups, eps, fuse_silu,
                                fp16_, static_cast<float*>(partials.data()), stream_);
    return y;
  }
  group_norm_tokens_cuda(x.data(), gamma.data(), beta.data(), y.data(), N, C, S, groups, eps, fuse_silu, fp16_, stream_);
  return y;
}

Tensor CudaBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  L2D_ASSERT(x.dtype() == float_dtype() && gamma.dtype() == float_dtype() && beta.dtype() == float_dtype());
  const int64_t C = x.dim(-1), rows = C ? x.numel() / C : 0;
  L2D_ASSERT(gamma.numel() == C && beta.numel() == C);
  Tensor y = empty(x.shape());
  const bool fast = norm_kernel_ == NormKernel::Fast &&
                    layer_norm_fast_supported(x.data(), gamma.data(), beta.data(), y.data(), C, fp16_);
  if (fast)
    layer_norm_fast_cuda(x.data(), gamma.data(), beta.data(), y.data(), rows, C, eps, fp16_, stream_);
  else
    layer_norm_cuda(x.data(), gamma.data(), beta.data(), y.data(), rows, C, eps, fp16_, stream_);
  return y;
}

Tensor CudaBackend::upsample_nearest(const Tensor& x, int out_h, int out_w) {
  L2D_ASSERT(x.ndim() == 4 && x.dtype() == float_dtype() && out_h > 0 && out_w > 0);
  Tensor y = empty({x.dim(0), x.dim(1), out_h, out_w});
  upsample_nearest_cuda(x.data(), y.data(), x.dim(0) * x.dim(1), int(dim_or_fail(x.dim(2), "height")),
                        int(dim_or_fail(x.dim(3), "width")), out_h, out_w, fp16_, stream_);
  return y;
}

Tensor CudaBackend::resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) {
  L2D_ASSERT(x.ndim() == 4 && x.dtype() == float_dtype() && out_h > 0 && out_w > 0);
  Tensor y = empty({x.dim(0), x.dim(1), out_h, out_w});
  resize_bilinear_cuda(x.data(), y.data(), x.dim(0) * x.dim(1), int(dim_or_fail(x.dim(2), "height")),
                       int(dim_or_fail(x.dim(3), "width")), out_h, out_w, align_corners, fp16_, stream_);
  return y;
}

Tensor CudaBackend::max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) {
  L2D_ASSERT(x.ndim() == 4 && x.dtype() == float_dtype() && kernel >= 1 && p.stride_h >= 1 && p.stride_w >= 1);
  const int64_t H = x.dim(2), W = x.dim(3);
  const int64_t Ho = (H + p.pad_top + p.pad_bottom - kernel) / p.stride_h + 1;
  const int64_t Wo = (W + p.pad_left + p.pad_right - kernel) / p.stride_w + 1;
  L2D_ASSERT(Ho > 0 && Wo > 0);
  Tensor y = empty({x.dim(0), x.dim(1), Ho, Wo});
  max_pool2d_cuda(x.data(), y.data(), x.dim(0) * x.dim(1), int(dim_or_fail(H, "height")), int(dim_or_fail(W, "width")),
                  int(Ho), int(Wo), kernel, p.stride_h, p.stride_w, p.pad_top, p.pad_left, fp16_, stream_);
  return y;
}

// Out-of-range ids cannot throw from the kernel: it clamps them and records the first one in
// dev_error_, and the next synchronize() (to_host does one) throws L2D_ERR_INVALID_ARGUMENT.
Tensor CudaBackend::embedding(const Tensor& ids, const Tensor& table) {
  L2D_ASSERT(ids.dtype() == DType::I32 && table.ndim() == 2 && table.dtype() == float_dtype());
  const int64_t V = table.dim(0), D = table.dim(1), n = ids.numel();
  Shape out = ids.shape();
  out.push_back(D);
  Tensor y = empty(out);
  embedding_cuda(ids.ptr<int32_t>(), table.data(), y.data(), n, dim_or_fail(V, "vocabulary"), D, dev_error_, fp16_,
                 stream_);
  return y;
}

Tensor CudaBackend::minmax_normalize(const Tensor& x) {
  L2D_ASSERT(x.dtype() == float_dtype());
  const int64_t n = x.numel();
  L2D_ASSERT(n > 0);
  Tensor y = empty(x.shape());
  Tensor scratch(this, DType::F32, {2 * int64_t(minmax_partials(n))});
  minmax_normalize_cuda(x.data(), y.data(), n, scratch.ptr<float>(), fp16_, stream_);
  return y;  // scratch goes back to the pool; stream order keeps it alive for the kernels
}

}  // namespace l2d::cuda
