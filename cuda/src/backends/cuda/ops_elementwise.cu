// Elementwise and layout ops of the CUDA backend (host side: shape logic, then one launch).
#include <algorithm>

#include "backend_cuda.h"
#include "common.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/layout.cuh"
#include "ops_util.h"

namespace l2d::cuda {

static_assert(int(Unary::Silu) == 0 && int(Unary::Relu) == 1 && int(Unary::GeluErf) == 2 &&
                  int(Unary::GeluTanh) == 3 && int(Unary::QuickGelu) == 4 && int(Unary::Tanh) == 5 &&
                  int(Unary::Sigmoid) == 6 && int(Unary::Affine) == 7 && int(Unary::Clamp) == 8,
              "elementwise.cu mirrors the Unary order");
static_assert(int(Binary::Add) == 0 && int(Binary::Sub) == 1 && int(Binary::Mul) == 2 && int(Binary::Div) == 3,
              "elementwise.cu mirrors the Binary order");

void CudaBackend::fill(Tensor& t, float value) {
  L2D_ASSERT(t.dtype() == float_dtype());
  fill_cuda(t.data(), t.numel(), value, fp16_, stream_);
}

Tensor CudaBackend::unary(const Tensor& x, Unary op, float a, float b) {
  L2D_ASSERT(x.dtype() == float_dtype());
  Tensor y = empty(x.shape());
  unary_cuda(x.data(), y.data(), x.numel(), int(op), a, b, fp16_, stream_);
  return y;
}

Tensor CudaBackend::binary(const Tensor& a, const Tensor& b, Binary op) {
  L2D_ASSERT(a.dtype() == float_dtype() && b.dtype() == float_dtype());
  if (a.shape() == b.shape()) {
    Tensor y = empty(a.shape());
    binary_cuda(a.data(), b.data(), y.data(), y.numel(), nullptr, int(op), fp16_, stream_);
    return y;
  }
  // NumPy broadcasting, aligned right (same rule as the CPU oracle).
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  const size_t n = std::max(as.size(), bs.size());
  L2D_ASSERT(n <= 8);
  Shape out(n);
  BroadcastDims d{};
  int64_t stride_a = 1, stride_b = 1;
  for (size_t i = n; i-- > 0;) {
    const int64_t da = i + as.size() >= n ? as[i + as.size() - n] : 1;
    const int64_t db = i + bs.size() >= n ? bs[i + bs.size() - n] : 1;
    if (da != db && da != 1 && db != 1) fail(L2D_ERR_INTERNAL, "cannot broadcast ", shape_str(as), " with ", shape_str(bs));
    out[i] = std::max(da, db);
    d.shape[i] = out[i];
    d.sa[i] = da == 1 ? 0 : stride_a;
    d.sb[i] = db == 1 ? 0 : stride_b;
    stride_a *= da;
    stride_b *= db;
  }
  Tensor y = empty(out);
  d.ndim = collapse_dims(int(n), d.shape, d.sa, d.sb);
  binary_cuda(a.data(), b.data(), y.data(), y.numel(), &d, int(op), fp16_, stream_);
  return y;
}

Tensor CudaBackend::geglu(const Tensor& x) {
  L2D_ASSERT(x.dtype() == float_dtype());
  const int64_t c2 = x.dim(-1);
  L2D_ASSERT(c2 % 2 == 0);
  const int64_t c = c2 / 2, rows = c2 ? x.numel() / c2 : 0;
  Shape s = x.shape();
  s.back() = c;
  Tensor y = empty(s);
  geglu_cuda(x.data(), y.data(), rows, c, fp16_, stream_);
  return y;
}

// ---- layout ----

static void contiguous_strides(const Shape& s, int64_t* st) {
  int64_t acc = 1;
  for (size_t d = s.size(); d-- > 0;) {
    st[d] = acc;
    acc *= s[d];
  }
}

static void run_copy(const void* src, void* dst, DType dtype, StridedCopy& c, cudaStream_t stream) {
  c.ndim = collapse_dims(c.ndim, c.shape, c.src_stride, c.dst_stride);
  strided_copy_cuda(src, dst, int(storage_size(dtype)), c, stream);
}

Tensor CudaBackend::permute(const Tensor& x, const std::vector<int>& perm) {
  const int nd = x.ndim();
  L2D_ASSERT(int(perm.size()) == nd && nd <= 8);
  Shape out(static_cast<size_t>(nd));
  int64_t in_strides[8];
  contiguous_strides(x.shape(), in_strides);
  StridedCopy c{};
  c.ndim = nd;
  for (int d = 0; d < nd; ++d) {
    L2D_ASSERT(perm[size_t(d)] >= 0 && perm[size_t(d)] < nd);
    out[size_t(d)] = x.shape()[size_t(perm[size_t(d)])];
    c.shape[d] = out[size_t(d)];
    c.src_stride[d] = in_strides[perm[size_t(d)]];
  }
  contiguous_strides(out, c.dst_stride);
  Tensor y(this, x.dtype(), out);
  if (y.numel() == 0) return y;
  if (nd == 0) {
    c.ndim = 1;
    c.shape[0] = 1;
  }
  run_copy(x.data(), y.data(), x.dtype(), c, stream_);
  return y;
}

void CudaBackend::write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) {
  const int nd = dst.ndim();
  L2D_ASSERT(src.ndim() == nd && int(starts.size()) == nd && src.dtype() == dst.dtype() && nd <= 8 && nd >= 1);
  for (int d = 0; d < nd; ++d)
    if (starts[size_t(d)] < 0 || starts[size_t(d)] + src.dim(d) > dst.dim(d))
      fail(L2D_ERR_INTERNAL, "write_slice of ", shape_str(src.shape()), " at dim ", d, " offset ", starts[size_t(d)],
           " exceeds ", shape_str(dst.shape()));
  if (src.numel() == 0) return;
  StridedCopy c{};
  c.ndim = nd;
  contiguous_strides(src.shape(), c.src_stride);
  contiguous_strides(dst.shape(), c.dst_stride);
  for (int d = 0; d < nd; ++d) {
    c.shape[d] = src.dim(d);
    c.dst_base += starts[size_t(d)] * c.dst_stride[d];
  }
  run_copy(src.data(), dst.data(), dst.dtype(), c, stream_);
}

Tensor CudaBackend::slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step) {
  const int nd = x.ndim();
  if (dim < 0) dim += nd;
  L2D_ASSERT(dim >= 0 && dim < nd && nd <= 8);
  L2D_ASSERT(step >= 1 && start >= 0 && end <= x.dim(dim) && start <= end);
  Shape out = x.shape();
  out[size_t(dim)] = (end - start + step - 1) / step;
  Tensor y(this, x.dtype(), out);
  if (y.numel() == 0) return y;
  StridedCopy c{};
  c.ndim = nd;
  contiguous_strides(x.shape(), c.src_stride);
  contiguous_strides(out, c.dst_stride);
  for (int d = 0; d < nd; ++d) c.shape[d] = out[size_t(d)];
  c.src_base = start * c.src_stride[dim];
  c.src_stride[dim] *= step;
  run_copy(x.data(), y.data(), x.dtype(), c, stream_);
  return y;
}

}  // namespace l2d::cuda
