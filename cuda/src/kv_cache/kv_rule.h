// kv_rule.h: the KV-cache bookkeeping update of one row (kv_cache.h, "Bookkeeping"), written once
// for the host (KvCache::advance, CpuBackend::kv_advance) and the CUDA kernel, so all three apply
// the same rule. T is the bias storage type (float or __half): values are 0 or -inf.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define L2D_KV_HD __host__ __device__ __forceinline__
#else
#define L2D_KV_HD inline
#endif

namespace l2d {

// If some slot is still masked: update_idx = count(bias == 0); else roll pe[sink:] by +1 and
// update_idx = argmax(pe) (first maximum). Then bias[:min(count + 1, W)] = 0 (count taken before).
template <typename T>
L2D_KV_HD void kv_advance_row(T* bias, int32_t* pe, int32_t* update_idx, int W, int sink) {
  int zeros = 0;
  bool any_masked = false;
  for (int s = 0; s < W; ++s) {
    const float b = float(bias[s]);
    zeros += b == 0.f;
    any_masked = any_masked || b != 0.f;  // bias holds only 0 and -inf
  }
  if (any_masked) {
    *update_idx = zeros;
  } else {
    const int32_t last = pe[W - 1];
    for (int s = W - 1; s > sink; --s) pe[s] = pe[s - 1];
    pe[sink] = last;
    int arg = 0;
    for (int s = 1; s < W; ++s)
      if (pe[s] > pe[arg]) arg = s;
    *update_idx = arg;
  }
  const int n = zeros + 1 < W ? zeros + 1 : W;
  for (int s = 0; s < n; ++s) bias[s] = T(0.f);
}

}  // namespace l2d
