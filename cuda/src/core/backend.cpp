// backend.cpp: ops defined once for every backend in terms of other ops.
#include "backend.h"

namespace l2d {

Tensor Backend::concat(const std::vector<Tensor>& xs, int dim) {
  L2D_ASSERT(!xs.empty());
  const int nd = xs[0].ndim();
  if (dim < 0) dim += nd;
  L2D_ASSERT(dim >= 0 && dim < nd);
  Shape out = xs[0].shape();
  out[size_t(dim)] = 0;
  for (const Tensor& t : xs) {
    L2D_ASSERT(t.ndim() == nd && t.dtype() == xs[0].dtype());
    for (int d = 0; d < nd; ++d) L2D_ASSERT(d == dim || t.dim(d) == xs[0].dim(d));
    out[size_t(dim)] += t.dim(dim);
  }
  Tensor y(this, xs[0].dtype(), out);
  std::vector<int64_t> starts(size_t(nd), 0);
  for (const Tensor& t : xs) {
    write_slice(y, t, starts);
    starts[size_t(dim)] += t.dim(dim);
  }
  return y;
}

}  // namespace l2d
