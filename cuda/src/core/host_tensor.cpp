#include "host_tensor.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

namespace l2d {

size_t dtype_size(l2d_dtype dtype) {
  switch (dtype) {
    case L2D_F32: return 4;
    case L2D_F16: return 2;
    case L2D_BF16: return 2;
    case L2D_I64: return 8;
    case L2D_I32: return 4;
    case L2D_U8: return 1;
    case L2D_BOOL: return 1;
  }
  fail(L2D_ERR_INVALID_ARGUMENT, "unknown dtype code ", int(dtype));
}

const char* dtype_name(l2d_dtype dtype) {
  switch (dtype) {
    case L2D_F32: return "F32";
    case L2D_F16: return "F16";
    case L2D_BF16: return "BF16";
    case L2D_I64: return "I64";
    case L2D_I32: return "I32";
    case L2D_U8: return "U8";
    case L2D_BOOL: return "BOOL";
  }
  return "?";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(L2D_ERR_INVALID_ARGUMENT, "negative dimension in shape ", shape_str(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      fail(L2D_ERR_INVALID_ARGUMENT, "shape ", shape_str(shape), " has too many elements");
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24, exactly representable in float32
      const float v = float(mant) * 5.9604644775390625e-8f;
      std::memcpy(&bits, &v, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  // Round to nearest even, with overflow to inf and gradual underflow.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520 -> inf
  if (absx < 0x38800000u) {                                 // subnormal half (or zero)
    const float a = std::fabs(f) * 16777216.0f;              // value / 2^-24
    return uint16_t(sign | uint32_t(std::nearbyint(a)));
  }
  const uint32_t mant_round = absx + 0xfffu + ((absx >> 13) & 1u);
  return uint16_t(sign | ((mant_round - 0x38000000u) >> 13));
}

std::vector<float> HostTensor::to_f32() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  const uint8_t* p = bytes.data();
  switch (dtype) {
    case L2D_F32: if (n) std::memcpy(out.data(), p, size_t(n) * 4); break;  // memcpy(null, null, 0) is UB
    case L2D_F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      break;
    case L2D_BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const uint32_t bits = uint32_t(h) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      break;
    case L2D_I64:
      for (int64_t i = 0; i < n; ++i) {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = float(v);
      }
      break;
    case L2D_I32:
      for (int64_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = float(v);
      }
      break;
    case L2D_U8:
    case L2D_BOOL:
      for (int64_t i = 0; i < n; ++i) out[i] = float(p[i]);
      break;
  }
  return out;
}

std::vector<int64_t> HostTensor::to_i64() const {
  const int64_t n = numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  const uint8_t* p = bytes.data();
  switch (dtype) {
    case L2D_I64: if (n) std::memcpy(out.data(), p, size_t(n) * 8); break;
    case L2D_I32:
      for (int64_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
      }
      break;
    case L2D_U8:
    case L2D_BOOL:
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    default: {
      const std::vector<float> f = to_f32();
      for (int64_t i = 0; i < n; ++i) {
        // Integral and within int64 (a float outside it would be undefined to convert).
        if (f[i] != std::floor(f[i]) || !(std::fabs(f[i]) < 9.2e18f))
          fail(L2D_ERR_INVALID_ARGUMENT, "expected integer values, got ", f[i]);
        out[i] = int64_t(f[i]);
      }
    }
  }
  return out;
}

HostTensor HostTensor::from_f32(const Shape& shape, const float* values) {
  HostTensor t;
  t.dtype = L2D_F32;
  t.shape = shape;
  t.bytes.resize(size_t(shape_numel(shape)) * 4);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), values, t.bytes.size());
  return t;
}

HostTensor HostTensor::from_i64(const Shape& shape, const int64_t* values) {
  HostTensor t;
  t.dtype = L2D_I64;
  t.shape = shape;
  t.bytes.resize(size_t(shape_numel(shape)) * 8);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), values, t.bytes.size());
  return t;
}

const HostTensor& TensorMap::at(const std::string& name, const char* wanted_by) const {
  auto it = entries.find(name);
  if (it == entries.end()) fail(L2D_ERR_NOT_FOUND, wanted_by, " needs tensor \"", name, "\", which is missing");
  return it->second;
}

}  // namespace l2d
