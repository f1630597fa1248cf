// Memory, host transfer, elementwise and layout ops of the CPU backend.
#include "backend_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "../../core/config.h"
#include "../../core/device_tally.h"
#include "../backends.h"

namespace l2d {

std::unique_ptr<Backend> make_cpu_backend(const Json& options) {
  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads =
      ConfigReader(options, "cpu context options", L2D_ERR_INVALID_ARGUMENT).integer("threads", std::min<int64_t>(hw, 256), 1, 256);
  return std::make_unique<cpu::CpuBackend>(int(threads));
}

namespace cpu {

void* CpuBackend::raw_alloc(size_t bytes) {
  audit_alloc(bytes);
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) fail(L2D_ERR_OUT_OF_MEMORY, "cannot allocate ", bytes, " bytes of host memory");
  const size_t now = in_use_ += bytes;
  size_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void CpuBackend::raw_free(void* ptr, size_t bytes) {
  std::free(ptr);
  in_use_ -= bytes;
}

Tensor CpuBackend::from_host(const HostTensor& host) {
  audit_host_op("from_host");
  tally_copy();
  const bool integer = host.dtype == L2D_I64 || host.dtype == L2D_I32 || host.dtype == L2D_U8 || host.dtype == L2D_BOOL;
  if (integer) {
    const std::vector<int64_t> v = host.to_i64();
    Tensor t(this, DType::I32, host.shape);
    int32_t* p = t.ptr<int32_t>();
    for (size_t i = 0; i < v.size(); ++i) {
      L2D_REQUIRE(v[i] >= INT32_MIN && v[i] <= INT32_MAX, "integer value ", v[i], " does not fit int32");
      p[i] = int32_t(v[i]);
    }
    return t;
  }
  Tensor t(this, DType::F32, host.shape);
  const std::vector<float> v = host.to_f32();
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * 4);
  return t;
}

HostTensor CpuBackend::to_host(const Tensor& t) {
  audit_host_op("to_host");
  tally_copy();
  HostTensor h;
  h.dtype = t.dtype() == DType::I32 ? L2D_I32 : L2D_F32;
  h.shape = t.shape();
  h.bytes.resize(t.bytes());
  if (!h.bytes.empty()) std::memcpy(h.bytes.data(), t.data(), h.bytes.size());
  return h;
}

Tensor CpuBackend::zeros(const Shape& shape, DType dtype) {
  L2D_CPU_OP("zeros");
  Tensor t(this, dtype, shape);
  if (t.bytes()) std::memset(t.data(), 0, t.bytes());
  return t;
}

void CpuBackend::fill(Tensor& t, float value) {
  L2D_ASSERT(t.dtype() == DType::F32);
  std::fill_n(t.ptr<float>(), t.numel(), value);
}

// ---- elementwise ----

static inline float apply_unary(float x, Unary op, float a, float b) {
  switch (op) {
    case Unary::Silu: return x / (1.f + std::exp(-x));
    case Unary::Relu: return x > 0.f ? x : 0.f;
    case Unary::GeluErf: return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
    case Unary::GeluTanh: return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case Unary::QuickGelu: return x / (1.f + std::exp(-1.702f * x));
    case Unary::Tanh: return std::tanh(x);
    case Unary::Sigmoid: return 1.f / (1.f + std::exp(-x));
    case Unary::Affine: return a * x + b;
    case Unary::Clamp: return std::min(std::max(x, a), b);
  }
  return x;
}

Tensor CpuBackend::unary(const Tensor& x, Unary op, float a, float b) {
  L2D_CPU_OP("unary");
  Tensor y = empty(x.shape());
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool_.parallel_for(x.numel(), 1 << 15, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) yp[i] = apply_unary(xp[i], op, a, b);
  });
  return y;
}

// Broadcast shapes aligned right; returns output shape and per-operand strides (0 on broadcast dims).
static Shape broadcast_shape(const Shape& a, const Shape& b, std::vector<int64_t>& sa, std::vector<int64_t>& sb) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  sa.assign(n, 0);
  sb.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    const int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    if (da != db && da != 1 && db != 1)
      fail(L2D_ERR_INTERNAL, "cannot broadcast ", shape_str(a), " with ", shape_str(b));
    out[i] = std::max(da, db);
  }
  int64_t stride_a = 1, stride_b = 1;
  for (size_t i = n; i-- > 0;) {
    const int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    const int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    sa[i] = da == 1 ? 0 : stride_a;
    sb[i] = db == 1 ? 0 : stride_b;
    stride_a *= da;
    stride_b *= db;
  }
  return out;
}

static inline float apply_binary(float x, float y, Binary op) {
  switch (op) {
    case Binary::Add: return x + y;
    case Binary::Sub: return x - y;
    case Binary::Mul: return x * y;
    case Binary::Div: return x / y;
  }
  return x;
}

Tensor CpuBackend::binary(const Tensor& a, const Tensor& b, Binary op) {
  L2D_CPU_OP("binary");
  std::vector<int64_t> sa, sb;
  const Shape out_shape = broadcast_shape(a.shape(), b.shape(), sa, sb);
  Tensor y = empty(out_shape);
  const float* ap = a.ptr<float>();
  const float* bp = b.ptr<float>();
  float* yp = y.ptr<float>();
  const int nd = int(out_shape.size());
  if (a.shape() == b.shape()) {
    pool_.parallel_for(y.numel(), 1 << 15, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) yp[i] = apply_binary(ap[i], bp[i], op);
    });
    return y;
  }
  // Rows of the innermost dimension; index arithmetic per row only.
  const int64_t inner = nd ? out_shape[size_t(nd - 1)] : 1;
  const int64_t rows = inner ? y.numel() / inner : 0;
  pool_.parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, oa = 0, ob = 0;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t idx = rem % out_shape[size_t(d)];
        rem /= out_shape[size_t(d)];
        oa += idx * sa[size_t(d)];
        ob += idx * sb[size_t(d)];
      }
      const int64_t ia = nd ? sa[size_t(nd - 1)] : 0, ib = nd ? sb[size_t(nd - 1)] : 0;
      float* yr = yp + r * inner;
      for (int64_t j = 0; j < inner; ++j) yr[j] = apply_binary(ap[oa + j * ia], bp[ob + j * ib], op);
    }
  });
  return y;
}

Tensor CpuBackend::geglu(const Tensor& x) {
  L2D_CPU_OP("geglu");
  const int64_t c2 = x.dim(-1);
  L2D_ASSERT(c2 % 2 == 0);
  const int64_t c = c2 / 2, rows = x.numel() / c2;
  Shape s = x.shape();
  s.back() = c;
  Tensor y = empty(s);
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool_.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < c; ++j) {
        const float g = xp[r * c2 + c + j];
        yp[r * c + j] = xp[r * c2 + j] * (0.5f * g * (1.f + std::erf(g * 0.70710678118654752f)));
      }
  });
  return y;
}

// ---- layout ----

Tensor CpuBackend::permute(const Tensor& x, const std::vector<int>& perm) {
  L2D_CPU_OP("permute");
  const int nd = x.ndim();
  L2D_ASSERT(int(perm.size()) == nd);
  Shape out(static_cast<size_t>(nd));
  std::vector<int64_t> in_strides(static_cast<size_t>(nd)), src_stride(static_cast<size_t>(nd));
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    in_strides[size_t(d)] = s;
    s *= x.shape()[size_t(d)];
  }
  for (int d = 0; d < nd; ++d) {
    out[size_t(d)] = x.shape()[size_t(perm[size_t(d)])];
    src_stride[size_t(d)] = in_strides[size_t(perm[size_t(d)])];
  }
  Tensor y(this, x.dtype(), out);
  const size_t es = storage_size(x.dtype());
  const char* xp = static_cast<const char*>(x.data());
  char* yp = static_cast<char*>(y.data());
  const int64_t inner = nd ? out[size_t(nd - 1)] : 1;
  const int64_t rows = inner ? y.numel() / inner : 0;
  pool_.parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, off = 0;
      for (int d = nd - 2; d >= 0; --d) {
        off += (rem % out[size_t(d)]) * src_stride[size_t(d)];
        rem /= out[size_t(d)];
      }
      const int64_t st = nd ? src_stride[size_t(nd - 1)] : 1;
      char* dst = yp + size_t(r * inner) * es;
      if (es == 4) {
        const uint32_t* src = reinterpret_cast<const uint32_t*>(xp) + off;
        uint32_t* d32 = reinterpret_cast<uint32_t*>(dst);
        for (int64_t j = 0; j < inner; ++j) d32[j] = src[j * st];
      } else {
        for (int64_t j = 0; j < inner; ++j) std::memcpy(dst + j * es, xp + size_t(off + j * st) * es, es);
      }
    }
  });
  return y;
}

void CpuBackend::write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) {
  const int nd = dst.ndim();
  L2D_ASSERT(src.ndim() == nd && int(starts.size()) == nd && src.dtype() == dst.dtype());
  for (int d = 0; d < nd; ++d)
    if (starts[size_t(d)] < 0 || starts[size_t(d)] + src.dim(d) > dst.dim(d))
      fail(L2D_ERR_INTERNAL, "write_slice of ", shape_str(src.shape()), " at dim ", d, " offset ", starts[size_t(d)],
           " exceeds ", shape_str(dst.shape()));
  if (src.numel() == 0) return;
  const size_t es = storage_size(dst.dtype());
  std::vector<int64_t> dstride(static_cast<size_t>(nd));
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    dstride[size_t(d)] = s;
    s *= dst.dim(d);
  }
  const int64_t inner = src.dim(nd - 1);
  const int64_t rows = src.numel() / inner;
  const char* sp = static_cast<const char*>(src.data());
  char* dp = static_cast<char*>(dst.data());
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, off = starts[size_t(nd - 1)];
    for (int d = nd - 2; d >= 0; --d) {
      off += (rem % src.dim(d) + starts[size_t(d)]) * dstride[size_t(d)];
      rem /= src.dim(d);
    }
    std::memcpy(dp + size_t(off) * es, sp + size_t(r * inner) * es, size_t(inner) * es);
  }
}

Tensor CpuBackend::slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step) {
  L2D_CPU_OP("slice");
  const int nd = x.ndim();
  if (dim < 0) dim += nd;
  L2D_ASSERT(step >= 1 && start >= 0 && end <= x.dim(dim) && start <= end);
  Shape out = x.shape();
  out[size_t(dim)] = (end - start + step - 1) / step;
  Tensor y(this, x.dtype(), out);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= x.dim(d);
  for (int d = dim + 1; d < nd; ++d) inner *= x.dim(d);
  const size_t es = storage_size(x.dtype());
  const char* xp = static_cast<const char*>(x.data());
  char* yp = static_cast<char*>(y.data());
  const int64_t n_in = x.dim(dim), n_out = out[size_t(dim)];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < n_out; ++i)
      std::memcpy(yp + size_t((o * n_out + i) * inner) * es, xp + size_t((o * n_in + start + i * step) * inner) * es,
                  size_t(inner) * es);
  return y;
}

}  // namespace cpu
}  // namespace l2d
