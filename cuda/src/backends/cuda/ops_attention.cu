// Attention ops of the CUDA backend: shape checks (the same as the CPU oracle's) and one kernel
// launch each. With L2D_ATTENTION=tc a context runs the fast kernels where the problem fits them:
// fused attention on tensor cores (attention_tc.cu: fp16, head dim % 8 == 0, <= 160) and the
// vectorised in-place temporal attention (temporal_attention.cu: a 16-slot window, 16-byte
// chunks). Everything else, and every problem under L2D_ATTENTION=simple, runs the simple kernels
// of attention.cu (fp32 math on either storage type, one thread per dim).
#include <cstdlib>
#include <cstring>

#include "backend_cuda.h"
#include "common.cuh"
#include "kernels/attention.cuh"
#include "kernels/attention_tc.cuh"
#include "kernels/temporal_attention.cuh"
#include "ops_util.h"

namespace l2d::cuda {

AttentionKernel attention_kernel_from_env() {
  const char* env = std::getenv("L2D_ATTENTION");
  if (!env || !*env || std::strcmp(env, "simple") == 0) return AttentionKernel::Simple;
  if (std::strcmp(env, "tc") == 0) return AttentionKernel::Fast;
  fail(L2D_ERR_INVALID_ARGUMENT, "L2D_ATTENTION must be \"simple\" or \"tc\", got \"", env, "\"");
}

Tensor CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) {
  L2D_ASSERT(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3);
  L2D_ASSERT(q.dtype() == float_dtype() && k.dtype() == float_dtype() && v.dtype() == float_dtype());
  const int64_t B = q.dim(0), Lq = q.dim(1), HD = q.dim(2), Lk = k.dim(1), Bk = k.dim(0);
  L2D_ASSERT(k.dim(2) == HD && v.dim(2) == HD && v.dim(1) == Lk && (Bk == B || Bk == 1) && v.dim(0) == Bk);
  L2D_ASSERT(heads > 0 && HD % heads == 0 && Lk > 0);
  Tensor y = empty({B, Lq, HD});
  const int b = int(dim_or_fail(B, "attention batch")), lq = int(dim_or_fail(Lq, "attention Lq"));
  const int lk = int(dim_or_fail(Lk, "attention Lk")), D = int(HD / heads);
  const bool causal = mask == AttnMask::Causal;
  if (attention_kernel_ == AttentionKernel::Fast &&
      attention_tc_supported(q.data(), k.data(), v.data(), y.data(), D, fp16_))
    attention_tc_cuda(q.data(), k.data(), v.data(), y.data(), b, lq, lk, int(Bk), heads, D, causal, stream_);
  else
    attention_cuda(q.data(), k.data(), v.data(), y.data(), b, lq, lk, int(Bk), heads, D, causal, fp16_, stream_);
  return y;
}

Tensor CudaBackend::stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                              const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                              const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                              int heads) {
  L2D_ASSERT(q.ndim() == 3 && cache.ndim() == 5);
  const int64_t R = q.dim(0), P = q.dim(1), C = q.dim(2), Wn = cache.dim(3), max_len = qpe.dim(0);
  L2D_ASSERT(k.shape() == q.shape() && v.shape() == q.shape());
  L2D_ASSERT(cache.dim(0) == R && cache.dim(1) == 2 && cache.dim(2) == P && cache.dim(4) == C);
  L2D_ASSERT(qpe.ndim() == 2 && qpe.dim(1) == C && kpe.shape() == qpe.shape() && vpe.shape() == qpe.shape());
  L2D_ASSERT(pe_idx.dtype() == DType::I32 && update_idx.dtype() == DType::I32);
  L2D_ASSERT(pe_idx.ndim() == 2 && pe_idx.dim(0) == R && pe_idx.dim(1) == Wn && update_idx.numel() == R);
  L2D_ASSERT(bias.ndim() == 2 && bias.dim(0) == R && bias.dim(1) == Wn);
  L2D_ASSERT(heads > 0 && C % heads == 0 && Wn > 0 && max_len > 0);
  for (const Tensor* t : {&q, &k, &v, static_cast<const Tensor*>(&cache), &qpe, &kpe, &vpe, &bias})
    L2D_ASSERT(t->dtype() == float_dtype());
  Tensor y = empty({R, P, C});
  StreamAttnArgs a{};
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.cache = cache.data();
  a.qpe = qpe.data();
  a.kpe = kpe.data();
  a.vpe = vpe.data();
  a.pe_idx = pe_idx.ptr<int32_t>();
  a.update_idx = update_idx.ptr<int32_t>();
  a.bias = bias.data();
  a.y = y.data();
  a.R = int(dim_or_fail(R, "rows"));
  a.P = int(dim_or_fail(P, "pixels"));
  a.C = int(dim_or_fail(C, "channels"));
  a.W = int(dim_or_fail(Wn, "window"));
  a.heads = heads;
  a.max_len = int(dim_or_fail(max_len, "max_len"));
  a.err = dev_error_;
  if (attention_kernel_ == AttentionKernel::Fast && temporal_vec_supported(a, fp16_))
    temporal_vec_cuda(a, fp16_, stream_);
  else
    stream_temporal_attention_cuda(a, fp16_, stream_);
  return y;
}

}  // namespace l2d::cuda
