// test_cuda_stream_ops: the per-frame stream ops on CUDA (fp32 and fp16 storage) against the CPU
// backend, through the C ABI and the "ops" model:
//  - image_fit_from_u8 at camera sizes (720p, 1080p, RGB and RGBA) fitted to 512x512 and 768x512.
//    Both run the same float formula (core/frame_fit.h), so levels must agree within one 8-bit
//    level everywhere and exactly almost everywhere;
//  - random_normal_counter / counter_add (Philox draw index read from a device counter);
//  - kv_advance (the KV-cache bookkeeping rule on the device): exact, through warm-up and rolling.
// "no GPU" and exit 77 without a GPU; L2D_TEST_SELF=1 runs the device side on a CPU context.
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

// normal([2, 4, 64, 64], seed 42, stream 3, draw 1000 + 5), then counter += 3.
bool draw(Ctx& c, std::vector<float>& y, int32_t& counter_out) {
  l2d_tmap* io = nullptr;
  l2d_tmap_create(&io);
  const int64_t one[1] = {1}, four[1] = {4}, counter[1] = {1000}, params[4] = {42, 3, 5, 3};
  const int64_t shape[4] = {2, 4, 64, 64};
  l2d_tmap_set(io, "counter", L2D_I64, 1, one, counter, sizeof counter);
  l2d_tmap_set(io, "params", L2D_I64, 1, four, params, sizeof params);
  l2d_tmap_set(io, "shape", L2D_I64, 1, four, shape, sizeof shape);
  bool ok = l2d_model_run(c.model, "random_normal_counter", io) == L2D_OK;
  if (!ok) std::printf("%s: random_normal_counter failed: %s\n", c.name, l2d_model_last_error(c.model));
  y.assign(2 * 4 * 64 * 64, 0.f);
  ok = ok && l2d_tmap_get(io, "y", y.data(), y.size() * 4) == L2D_OK &&
       l2d_tmap_get(io, "counter_out", &counter_out, sizeof counter_out) == L2D_OK;
  l2d_tmap_free(io);
  return ok;
}

// Live2Diff's initial bookkeeping for R rows, W slots, sink S (kv_cache.h), advanced `times` times by
// Backend::kv_advance; returns bias, pe_idx and update_idx concatenated as floats.
bool kv(Ctx& c, int times, std::vector<float>& out) {
  constexpr int R = 3, W = 16, S = 8;
  std::vector<float> bias(R * W, -INFINITY);
  std::vector<int64_t> pe(R * W), upd(R, S);
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < W; ++s) {
      pe[size_t(r * W + s)] = s;
      if (s < S) bias[size_t(r * W + s)] = 0.f;
    }
  bias[S] = 0.f;
  upd[1] = S + 1;
  l2d_tmap* io = nullptr;
  l2d_tmap_create(&io);
  const int64_t rw[2] = {R, W}, r1[1] = {R}, two[1] = {2}, params[2] = {S, times};
  l2d_tmap_set(io, "bias", L2D_F32, 2, rw, bias.data(), bias.size() * 4);
  l2d_tmap_set(io, "pe_idx", L2D_I64, 2, rw, pe.data(), pe.size() * 8);
  l2d_tmap_set(io, "update_idx", L2D_I64, 1, r1, upd.data(), upd.size() * 8);
  l2d_tmap_set(io, "params", L2D_I64, 1, two, params, sizeof params);
  bool ok = l2d_model_run(c.model, "kv_advance", io) == L2D_OK;
  if (!ok) std::printf("%s: kv_advance failed: %s\n", c.name, l2d_model_last_error(c.model));
  std::vector<int32_t> pe_out(R * W), upd_out(R);
  out.assign(R * W, 0.f);
  ok = ok && l2d_tmap_get(io, "y", out.data(), out.size() * 4) == L2D_OK &&
       l2d_tmap_get(io, "pe_idx_out", pe_out.data(), pe_out.size() * 4) == L2D_OK &&
       l2d_tmap_get(io, "update_idx_out", upd_out.data(), upd_out.size() * 4) == L2D_OK;
  for (int32_t v : pe_out) out.push_back(float(v));
  for (int32_t v : upd_out) out.push_back(float(v));
  l2d_tmap_free(io);
  return ok;
}

}  // namespace

int main() {
  const bool self = std::getenv("L2D_TEST_SELF") != nullptr;
  int32_t available = 0;
  if (!self && (l2d_backend_available("cuda", &available) != L2D_OK || !available)) {
    // Exit 77 (the op-test convention for "CUDA could not start"): gpu-check reports a failed step.
    std::printf("test_cuda_stream_ops: no GPU: the CUDA backend is unavailable (test_cuda_ops prints why)   FAIL\n");
    return 77;
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
  // Philox with the draw index on the device: y == normal(shape, seed, stream, counter + offset)
  // (the same values the CPU draws; fp16 rounds them), and the counter advances on the device.
  for (Ctx& d : devs) {
    std::vector<float> want, got;
    int32_t c_want = 0, c_got = 0;
    if (!draw(cpu, want, c_want) || !draw(d, got, c_got)) {
      ++failures;
      continue;
    }
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::fmax(worst, std::fabs(double(got[i]) - double(want[i])));
    const bool ok = c_want == c_got && c_got == 1003 && worst <= (d.fp16 ? 4e-3 : 1e-6);
    std::printf("random_normal_counter %-9s max_abs %.3e, counter %d%s\n", d.name, worst, c_got, ok ? "" : "   FAIL");
    if (!ok) ++failures;
  }
  // KV bookkeeping on the device: identical to the CPU after every number of frames.
  for (Ctx& d : devs) {
    bool ok = true;
    for (int times = 0; times <= 40 && ok; ++times) {
      std::vector<float> want, got;
      ok = kv(cpu, times, want) && kv(d, times, got) && want == got;
      if (!ok) std::printf("kv_advance %-9s differs after %d frames   FAIL\n", d.name, times);
    }
    if (ok) std::printf("kv_advance %-9s identical for 0..40 frames\n", d.name);
    else ++failures;
  }
  for (Ctx* c : {&cpu, &devs[0], &devs[1]}) {
    l2d_model_free(c->model);
    l2d_context_free(c->ctx);
  }
  std::printf(failures ? "test_cuda_stream_ops: %d FAILED\n" : "test_cuda_stream_ops: all ok\n", failures);
  return failures ? 1 : 0;
}
