#include "philox_fill.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "philox.h"

namespace l2d {

HostTensor philox_tensor(const std::string& name, const Shape& shape, PhiloxKind kind, uint32_t seed,
                         uint32_t stream, uint32_t draw) {
  const int64_t n = shape_numel(shape);
  HostTensor t;
  t.dtype = L2D_F32;
  t.shape = shape;
  t.bytes.resize(size_t(n) * 4);
  float* out = reinterpret_cast<float*>(t.bytes.data());
  const uint32_t hash = philox::fnv1a32(name);
  const int rule = int(philox::weight_rule(name, int(shape.size())));
  double fan_in = 1;
  for (size_t i = 1; i < shape.size(); ++i) fan_in *= double(shape[i]);
  auto fill = [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e)
      out[e] = kind == PhiloxKind::Weight ? philox::weight_at(uint64_t(e), seed, hash, rule, fan_in)
                                          : philox::normal_at(uint64_t(e), seed, stream, draw);
  };
  // Every element depends only on its index, so chunks can run on any thread in any order.
  const int64_t threads = std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()), (n >> 16) + 1);
  if (threads <= 1) {
    fill(0, n);
    return t;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (n + threads - 1) / threads;
  for (int64_t i = 1; i < threads; ++i) pool.emplace_back(fill, std::min(n, i * chunk), std::min(n, (i + 1) * chunk));
  fill(0, std::min(n, chunk));
  for (auto& th : pool) th.join();
  return t;
}

}  // namespace l2d
