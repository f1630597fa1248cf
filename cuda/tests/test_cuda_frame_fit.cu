// test_cuda_frame_fit: Backend::image_fit_from_u8 on CUDA (fp32 and fp16 storage) against the CPU
// backend, through the C ABI and the "ops" model, at camera sizes (720p, 1080p, RGB and RGBA) fitted
// to 512x512 and 768x512. Both run the same float formula (core/frame_fit.h), so levels must agree
// within one 8-bit level everywhere and exactly almost everywhere. "no GPU" and exit 0 without a
// GPU; L2D_TEST_SELF=1 runs the device side on a CPU context. Host code only.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "l2d.h"

namespace {

struct Ctx {
  const char* name;
  const char* options;
  bool fp16;
  l2d_context* ctx = nullptr;
  l2d_model* model = nullptr;
};

bool open_ctx(Ctx& c, const char* kind) {
  if (l2d_context_create(kind, c.options, &c.ctx) != L2D_OK) {
    std::printf("cannot create %s context: %s\n", c.name, l2d_last_error());
    return false;
  }
  l2d_tmap* weights = nullptr;
  l2d_tmap_create(&weights);
  const l2d_status st = l2d_model_create(c.ctx, "ops", "{}", weights, &c.model);
  l2d_tmap_free(weights);
  return st == L2D_OK;
}

// A camera-like frame: gradients, fine texture, blocks of noise (alpha noise too: it must be ignored).
std::vector<uint8_t> camera_frame(int64_t h, int64_t w, int c, uint32_t seed) {
  std::vector<uint8_t> f(size_t(h * w * c));
  uint32_t s = seed;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      s = s * 1664525u + 1013904223u;
      uint8_t* p = f.data() + (y * w + x) * c;
      p[0] = uint8_t((255 * x) / (w - 1));
      p[1] = (x + y) % 2 ? 250 : 0;
      p[2] = ((x >> 5) + (y >> 5)) % 2 ? uint8_t(s >> 24) : uint8_t(40 + y % 7);
      if (c == 4) p[3] = uint8_t(s);
    }
  return f;
}

bool fit(Ctx& c, const std::vector<uint8_t>& frame, int64_t h, int64_t w, int ch, int64_t oh, int64_t ow,
         std::vector<float>& out) {
  l2d_tmap* io = nullptr;
  l2d_tmap_create(&io);
  const int64_t fshape[3] = {h, w, ch}, sshape[1] = {2}, size[2] = {oh, ow};
  l2d_tmap_set(io, "frame", L2D_U8, 3, fshape, frame.data(), frame.size());
  l2d_tmap_set(io, "size", L2D_I64, 1, sshape, size, sizeof size);
  bool ok = l2d_model_run(c.model, "image_fit_from_u8", io) == L2D_OK;
  if (!ok) std::printf("%s: run failed: %s\n", c.name, l2d_model_last_error(c.model));
  out.assign(size_t(3 * oh * ow), 0.f);
  ok = ok && l2d_tmap_get(io, "y", out.data(), out.size() * 4) == L2D_OK;
  l2d_tmap_free(io);
  return ok;
}

}  // namespace

int main() {
  const bool self = std::getenv("L2D_TEST_SELF") != nullptr;
  int32_t available = 0;
  if (!self && (l2d_backend_available("cuda", &available) != L2D_OK || !available)) {
    std::printf("no GPU\n");
    return 0;
  }
  Ctx cpu{"cpu", nullptr, false};
  std::vector<Ctx> devs{{"cuda-fp32", "{\"precision\":\"fp32\"}", false}, {"cuda-fp16", "{\"precision\":\"fp16\"}", true}};
  if (!open_ctx(cpu, "cpu")) return 1;
  for (Ctx& d : devs)
    if (!open_ctx(d, self ? "cpu" : "cuda")) return 1;
  struct Geometry {
    int64_t h, w;
    int c;
    int64_t oh, ow;
  };
  const Geometry cases[] = {{720, 1280, 3, 512, 512},  {1080, 1920, 3, 512, 512}, {1080, 1920, 4, 512, 512},
                            {720, 1280, 4, 512, 768},  {480, 640, 3, 512, 512},   {512, 512, 3, 512, 512}};
  int failures = 0;
  uint32_t seed = 1;
  for (const Geometry& g : cases) {
    const std::vector<uint8_t> frame = camera_frame(g.h, g.w, g.c, seed++);
    std::vector<float> want, got;
    if (!fit(cpu, frame, g.h, g.w, g.c, g.oh, g.ow, want)) return 1;
    for (Ctx& d : devs) {
      if (!fit(d, frame, g.h, g.w, g.c, g.oh, g.ow, got)) {
        ++failures;
        continue;
      }
      // fp16 stores level / 255 rounded to half: compare levels after undoing that rounding.
      double worst = 0;
      int64_t differing = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double d_levels = std::fabs(double(got[i]) - double(want[i])) * 255.0;
        worst = std::fmax(worst, d_levels);
        if (d_levels > (d.fp16 ? 0.25 : 1e-4)) ++differing;
      }
      const bool ok = worst <= 1.0 + 1e-3 && differing * 1000 <= int64_t(want.size());
      std::printf("fit %5lldx%-5lld c%d -> %lldx%lld  %-9s worst %.4f levels, %lld of %zu differ%s\n", (long long)g.w,
                  (long long)g.h, g.c, (long long)g.ow, (long long)g.oh, d.name, worst, (long long)differing,
                  want.size(), ok ? "" : "   FAIL");
      if (!ok) ++failures;
    }
  }
  for (Ctx* c : {&cpu, &devs[0], &devs[1]}) {
    l2d_model_free(c->model);
    l2d_context_free(c->ctx);
  }
  std::printf(failures ? "test_cuda_frame_fit: %d FAILED\n" : "test_cuda_frame_fit: all ok\n", failures);
  return failures ? 1 : 0;
}
