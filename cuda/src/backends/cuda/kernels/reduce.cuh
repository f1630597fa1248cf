// reduce.cuh: minmax_normalize without a host round trip: pass 1 writes per-block (min, max)
// partials to a small device scratch, pass 2 reduces the partials in every block and normalises.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

// Number of partial (min, max) pairs minmax_normalize_cuda needs in its scratch (floats: 2x this).
int minmax_partials(int64_t n);
// y = (x - min x) / (max x - min x), no epsilon. scratch: 2 * minmax_partials(n) floats.
void minmax_normalize_cuda(const void* x, void* y, int64_t n, float* scratch, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
