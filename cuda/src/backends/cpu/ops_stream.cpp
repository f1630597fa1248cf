// Streaming I/O ops of the CPU backend: device-side noise and frame conversion.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../../core/device_tally.h"
#include "../../core/frame_fit.h"
#include "../../core/philox.h"
#include "../../kv_cache/kv_rule.h"
#include "backend_cpu.h"

namespace l2d::cpu {

Tensor CpuBackend::random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) {
  L2D_CPU_OP("random_normal");
  // A host draw index is baked into a captured graph: a replay must see the captured one.
  audit_value("random_normal draw", draw);
  return normal_fill(shape, seed, stream, draw);
}

Tensor CpuBackend::normal_fill(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) {
  Tensor y = empty(shape);
  float* p = y.ptr<float>();
  pool_.parallel_for(y.numel(), 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) p[i] = philox::normal_at(uint64_t(i), seed, stream, draw);
  });
  return y;
}

Tensor CpuBackend::random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream, const Tensor& counter,
                                         int32_t offset) {
  L2D_CPU_OP("random_normal_counter");
  L2D_ASSERT(counter.dtype() == DType::I32 && counter.numel() == 1);
  return normal_fill(shape, seed, stream, uint32_t(counter.ptr<int32_t>()[0] + offset));
}

void CpuBackend::counter_add(Tensor& counter, int32_t by) {
  L2D_ASSERT(counter.dtype() == DType::I32 && counter.numel() == 1);
  counter.ptr<int32_t>()[0] += by;
}

void CpuBackend::kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) {
  L2D_ASSERT(bias.ndim() == 2 && pe_idx.shape() == bias.shape() && update_idx.numel() == bias.dim(0));
  L2D_ASSERT(pe_idx.dtype() == DType::I32 && update_idx.dtype() == DType::I32 && sink >= 0 && sink < bias.dim(1));
  const int R = int(bias.dim(0)), W = int(bias.dim(1));
  for (int r = 0; r < R; ++r)
    kv_advance_row(bias.ptr<float>() + r * W, pe_idx.ptr<int32_t>() + r * W, update_idx.ptr<int32_t>() + r, W, sink);
}

namespace {

// uint8 [n, h, w, channels] -> float [n, 3, h, w] = value / 255. With plane / offset: the rows
// [h, w] go to p[plane-strided channel planes] at element `offset` (a band of a larger image).
void u8_to_planar(const uint8_t* in, int64_t n, int64_t h, int64_t w, int channels, float* p, int64_t plane = 0,
                  int64_t offset = 0) {
  if (plane == 0) plane = h * w;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t px = 0; px < h * w; ++px)
        p[(i * 3 + c) * plane + offset + px] = float(in[(i * h * w + px) * channels + c]) / 255.f;
}

}  // namespace

Tensor CpuBackend::image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) {
  audit_host_op("image_from_u8");
  tally_copy();
  L2D_REQUIRE(channels == 3 || channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", channels);
  Tensor y = empty({n, 3, h, w});
  u8_to_planar(host, n, h, w, channels, y.ptr<float>());
  return y;
}

void CpuBackend::upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) {
  audit_host_op("upload_bytes");
  tally_copy();
  L2D_ASSERT(bytes <= dst.bytes());
  if (bytes) std::memcpy(dst.data(), host, bytes);
}

Tensor CpuBackend::image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                                        int64_t out_w) {
  L2D_CPU_OP("image_fit_from_bytes");
  const auto* src = static_cast<const uint8_t*>(frame.data());
  check_fit_args(src, h, w, channels, out_h, out_w);
  L2D_ASSERT(size_t(h * w * channels) <= frame.bytes());
  Tensor y = empty({1, 3, out_h, out_w});
  if (h == out_h && w == out_w) {
    // A frame at the stream size is only converted: rows in parallel (one pool loop, which the
    // launch counters see, like the kernel the CUDA backend launches).
    float* p = y.ptr<float>();
    pool_.parallel_for(h, 16, [&](int64_t r0, int64_t r1) {
      u8_to_planar(src + r0 * w * channels, 1, r1 - r0, w, channels, p, h * w, r0 * w);
    });
  } else fit_frame_levels(src, w, channels, fit_tables(w, h, out_w, out_h), out_w, out_h, y.ptr<float>());
  return y;
}

void CpuBackend::image_to_u8(const Tensor& x, Tensor& out) {
  L2D_ASSERT(x.ndim() == 4 && x.dim(0) == 1 && x.dim(1) == 3);
  const int64_t hw = x.dim(2) * x.dim(3);
  L2D_ASSERT(size_t(hw * 3) <= out.bytes());
  const float* p = x.ptr<float>();
  auto* o = static_cast<uint8_t*>(out.data());
  for (int64_t px = 0; px < hw; ++px)
    for (int64_t c = 0; c < 3; ++c) o[px * 3 + c] = uint8_t(std::nearbyint(255.f * std::min(1.f, std::max(0.f, p[c * hw + px]))));
}

void CpuBackend::download_bytes(const Tensor& src, uint8_t* host, size_t bytes) {
  audit_host_op("download_bytes");
  tally_copy();
  L2D_ASSERT(bytes <= src.bytes());
  if (bytes) std::memcpy(host, src.data(), bytes);
}

void CpuBackend::image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) {
  audit_host_op("image_to_host");
  tally_copy();
  L2D_ASSERT(x.ndim() == 4 && x.dim(1) == 3);
  const int64_t n = x.dim(0), hw = x.dim(2) * x.dim(3);
  const float* p = x.ptr<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t px = 0; px < hw; ++px)
      for (int64_t c = 0; c < 3; ++c) {
        const float v = p[(i * 3 + c) * hw + px];
        const size_t o = size_t((i * hw + px) * 3 + c);
        if (out_f32) out_f32[o] = v;
        if (out_u8) out_u8[o] = uint8_t(std::nearbyint(255.f * std::min(1.f, std::max(0.f, v))));
      }
}

}  // namespace l2d::cpu
