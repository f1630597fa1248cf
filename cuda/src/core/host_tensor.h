// host_tensor.h: named host tensors (the l2d_tmap of the ABI). Owning, C-contiguous, little-endian
// bytes with a dtype and a shape; conversion helpers to and from float32 for the models.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "error.h"
#include "l2d.h"

namespace l2d {

using Shape = std::vector<int64_t>;

size_t dtype_size(l2d_dtype dtype);
const char* dtype_name(l2d_dtype dtype);
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);

struct HostTensor {
  l2d_dtype dtype = L2D_F32;
  Shape shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const { return shape_numel(shape); }
  // The values as float32 (F16/BF16/ints converted).
  std::vector<float> to_f32() const;
  // The values as int64 (integer dtypes only, floats must be integral).
  std::vector<int64_t> to_i64() const;
  static HostTensor from_f32(const Shape& shape, const float* values);
  static HostTensor from_i64(const Shape& shape, const int64_t* values);
};

// The tensor map: sorted by name so l2d_tmap_name() has a stable order.
struct TensorMap {
  std::map<std::string, HostTensor> entries;

  bool has(const std::string& name) const { return entries.count(name) != 0; }
  // Throws L2D_ERR_NOT_FOUND naming the missing entry and what wanted it.
  const HostTensor& at(const std::string& name, const char* wanted_by) const;
  void put(const std::string& name, HostTensor t) { entries[name] = std::move(t); }
};

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace l2d
