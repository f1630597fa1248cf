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

// One launch of fused attention on operands with row strides ld (AttnLd): the unpacked op passes
// H*D, self_attention 3 H*D (q, k, v read in place from the packed projection).
static void launch_attention(const void* q, const void* k, const void* v, void* y, int64_t B, int64_t Lq, int64_t Lk,
                             int64_t Bk, int heads, int D, AttnLd ld, AttnMask mask, AttentionKernel kernel, bool fp16,
                             cudaStream_t stream) {
  const int b = int(dim_or_fail(B, "attention batch")), lq = int(dim_or_fail(Lq, "attention Lq"));
  const int lk = int(dim_or_fail(Lk, "attention Lk"));
  const bool causal = mask == AttnMask::Causal;
  if (kernel == AttentionKernel::Fast && attention_tc_supported(q, k, v, y, D, ld, fp16))
    attention_tc_cuda(q, k, v, y, b, lq, lk, int(Bk), heads, D, ld, causal, stream);
  else
    attention_cuda(q, k, v, y, b, lq, lk, int(Bk), heads, D, ld, causal, fp16, stream);
}

Tensor CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) {
  L2D_ASSERT(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3);
  L2D_ASSERT(q.dtype() == float_dtype() && k.dtype() == float_dtype() && v.dtype() == float_dtype());
  const int64_t B = q.dim(0), Lq = q.dim(1), HD = q.dim(2), Lk = k.dim(1), Bk = k.dim(0);
  L2D_ASSERT(k.dim(2) == HD && v.dim(2) == HD && v.dim(1) == Lk && (Bk == B || Bk == 1) && v.dim(0) == Bk);
  L2D_ASSERT(heads > 0 && HD % heads == 0 && Lk > 0);
  Tensor y = empty({B, Lq, HD});
  launch_attention(q.data(), k.data(), v.data(), y.data(), B, Lq, Lk, Bk, heads, int(HD / heads), AttnLd{HD, HD}, mask,
                   attention_kernel_, fp16_, stream_);
  return y;
}

// The "qkv" fusion: q, k, v are read from the packed rows (stride 3C) instead of being sliced
// into three copies first. Off: the default (slices + attention).
Tensor CudaBackend::self_attention(const Tensor& qkv, int heads, AttnMask mask) {
  if (!fusions_.qkv) return Backend::self_attention(qkv, heads, mask);
  L2D_ASSERT(qkv.ndim() == 3 && qkv.dtype() == float_dtype() && qkv.dim(2) % 3 == 0);
  const int64_t B = qkv.dim(0), L = qkv.dim(1), ld = qkv.dim(2), C = ld / 3;
  L2D_ASSERT(heads > 0 && C % heads == 0 && L > 0);
  Tensor y = empty({B, L, C});
  const size_t es = fp16_ ? 2 : 4;
  const char* p = static_cast<const char*>(qkv.data());
  launch_attention(p, p + C * es, p + 2 * C * es, y.data(), B, L, L, B, heads, int(C / heads), AttnLd{ld, ld}, mask,
                   attention_kernel_, fp16_, stream_);
  return y;
}

// Argument checks shared by both temporal ops (the CPU oracle's), then one launch: q/k/v rows are
// ld_in elements apart.
static void launch_temporal(StreamAttnArgs& a, int64_t R, int64_t P, int64_t C, Tensor& cache, const Tensor& qpe,
                            const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                            const Tensor& bias, int heads, DType fdt, AttentionKernel kernel, bool fp16,
                            cudaStream_t stream) {
  const int64_t Wn = cache.dim(3), max_len = qpe.dim(0);
  L2D_ASSERT(cache.ndim() == 5);
  L2D_ASSERT(cache.dim(0) == R && cache.dim(1) == 2 && cache.dim(2) == P && cache.dim(4) == C);
  L2D_ASSERT(qpe.ndim() == 2 && qpe.dim(1) == C && kpe.shape() == qpe.shape() && vpe.shape() == qpe.shape());
  L2D_ASSERT(pe_idx.dtype() == DType::I32 && update_idx.dtype() == DType::I32);
  L2D_ASSERT(pe_idx.ndim() == 2 && pe_idx.dim(0) == R && pe_idx.dim(1) == Wn && update_idx.numel() == R);
  L2D_ASSERT(bias.ndim() == 2 && bias.dim(0) == R && bias.dim(1) == Wn);
  L2D_ASSERT(heads > 0 && C % heads == 0 && Wn > 0 && max_len > 0);
  for (const Tensor* t : {static_cast<const Tensor*>(&cache), &qpe, &kpe, &vpe, &bias}) L2D_ASSERT(t->dtype() == fdt);
  a.cache = cache.data();
  a.qpe = qpe.data();
  a.kpe = kpe.data();
  a.vpe = vpe.data();
  a.pe_idx = pe_idx.ptr<int32_t>();
  a.update_idx = update_idx.ptr<int32_t>();
  a.bias = bias.data();
  a.R = int(dim_or_fail(R, "rows"));
  a.P = int(dim_or_fail(P, "pixels"));
  a.C = int(dim_or_fail(C, "channels"));
  a.W = int(dim_or_fail(Wn, "window"));
  a.heads = heads;
  a.max_len = int(dim_or_fail(max_len, "max_len"));
  if (kernel == AttentionKernel::Fast && temporal_vec_supported(a, fp16))
    temporal_vec_cuda(a, fp16, stream);
  else
    stream_temporal_attention_cuda(a, fp16, stream);
}

Tensor CudaBackend::stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                              const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                              const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                              int heads) {
  L2D_ASSERT(q.ndim() == 3 && k.shape() == q.shape() && v.shape() == q.shape());
  for (const Tensor* t : {&q, &k, &v}) L2D_ASSERT(t->dtype() == float_dtype());
  const int64_t R = q.dim(0), P = q.dim(1), C = q.dim(2);
  Tensor y = empty({R, P, C});
  StreamAttnArgs a{};
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.y = y.data();
  a.ld_in = int(dim_or_fail(C, "channels"));
  a.err = dev_error_;
  launch_temporal(a, R, P, C, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads, float_dtype(), attention_kernel_,
                  fp16_, stream_);
  return y;
}

// The "qkv" fusion for the motion modules: the kernels read q/k/v from the packed rows (stride 3C)
// and write k/v into the cache slot from there. Off: the default (slices + the op above).
Tensor CudaBackend::stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe,
                                                  const Tensor& kpe, const Tensor& vpe, const Tensor& pe_idx,
                                                  const Tensor& update_idx, const Tensor& bias, int heads) {
  if (!fusions_.qkv)
    return Backend::stream_temporal_attention_qkv(qkv, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads);
  L2D_ASSERT(qkv.ndim() == 3 && qkv.dtype() == float_dtype() && qkv.dim(2) % 3 == 0);
  const int64_t R = qkv.dim(0), P = qkv.dim(1), ld = qkv.dim(2), C = ld / 3;
  Tensor y = empty({R, P, C});
  const size_t es = fp16_ ? 2 : 4;
  const char* p = static_cast<const char*>(qkv.data());
  StreamAttnArgs a{};
  a.q = p;
  a.k = p + C * es;
  a.v = p + 2 * C * es;
  a.y = y.data();
  a.ld_in = int(dim_or_fail(ld, "packed channels"));
  a.err = dev_error_;
  launch_temporal(a, R, P, C, cache, qpe, kpe, vpe, pe_idx, update_idx, bias, heads, float_dtype(), attention_kernel_,
                  fp16_, stream_);
  return y;
}

}  // namespace l2d::cuda
