// ops_util.h: small host-side helpers shared by the CudaBackend op files.
#pragma once

#include <cstdint>

#include "../../core/error.h"
#include "../../core/tensor.h"

namespace l2d::cuda {

// Merges adjacent iteration dims that both stride arrays walk contiguously (stride[d] ==
// stride[d+1] * shape[d+1]) and drops size-1 dims, in place; returns the new ndim (>= 1).
inline int collapse_dims(int ndim, int64_t* shape, int64_t* s1, int64_t* s2) {
  int out = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (out > 0 && s1[out - 1] == s1[d] * shape[d] && s2[out - 1] == s2[d] * shape[d]) {
      shape[out - 1] *= shape[d];
      s1[out - 1] = s1[d];
      s2[out - 1] = s2[d];
    } else {
      shape[out] = shape[d];
      s1[out] = s1[d];
      s2[out] = s2[d];
      ++out;
    }
  }
  if (out == 0) {
    shape[0] = 1;
    s1[0] = s2[0] = 0;
    out = 1;
  }
  return out;
}

inline int64_t dim_or_fail(int64_t v, const char* what) {
  if (v < 0 || v > INT32_MAX) fail(L2D_ERR_UNSUPPORTED, what, " = ", v, " is too large for the CUDA kernels");
  return v;
}

}  // namespace l2d::cuda
