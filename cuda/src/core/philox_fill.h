// philox_fill.h: host tensors filled with the golden README's Philox draws (the weight rule of a
// named parameter, or normal(shape, seed, stream, draw)), on all cores: full-size synthetic weights
// (1.3 B values) take seconds, not minutes.
#pragma once

#include <cstdint>
#include <string>

#include "host_tensor.h"

namespace l2d {

enum class PhiloxKind { Weight = 0, Normal = 1 };

HostTensor philox_tensor(const std::string& name, const Shape& shape, PhiloxKind kind, uint32_t seed,
                         uint32_t stream, uint32_t draw);

}  // namespace l2d
