// test_cuda_graph: the per-frame path of issue 15 on CUDA through the "ops" model's frame_graph
// method: frames uploaded through pinned staging into one fixed buffer, a small region (device
// frame fit, elementwise ops with a temporary freed inside it, uint8 output into one fixed buffer)
// run eagerly for frame 0, captured as a CUDA graph for frame 1, replayed for the rest, each output
// downloaded with one event. Checks, fp32 and fp16:
//  - graphs on (default): a graph is made, replays give bit-identically the frames of
//    L2D_CUDA_GRAPHS=0 (same kernels, eager), and tensors allocated after the capture with the
//    region's sizes are never written by a replay (the graph's blocks stay private);
//  - a synchronize() inside the region: the capture fails cleanly and falls back to eager with the
//    same frames;
//  - graph_reserved_bytes: > 0 while the graph holds the temporary's block, 0 after release, and
//    peak_bytes covers bytes_in_use + them;
//  - fp32 against the CPU backend (eager) for frames already at the output size: within one level.
// "no GPU" and exit 77 without a GPU; L2D_TEST_SELF=1 runs the "cuda" side on CPU contexts (no
// graph is made there, so only the frame comparisons apply).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "l2d.h"

namespace {

struct Result {
  std::vector<uint8_t> u8;
  int32_t captured = -1, intact = -1;
  int64_t reserved[3] = {-1, -1, -1};  // graph_reserved_bytes with the graph, after release, peak covers them
};

l2d_model* open_ops(const char* kind, const char* options) {
  l2d_context* ctx = nullptr;
  if (l2d_context_create(kind, options, &ctx) != L2D_OK) {
    std::printf("cannot create a %s context %s: %s\n", kind, options ? options : "", l2d_last_error());
    return nullptr;
  }
  l2d_tmap* weights = nullptr;
  l2d_tmap_create(&weights);
  l2d_model* model = nullptr;
  const l2d_status st = l2d_model_create(ctx, "ops", "{}", weights, &model);
  l2d_tmap_free(weights);
  return st == L2D_OK ? model : nullptr;  // (the context lives until the process ends)
}

std::vector<uint8_t> frames(int64_t n, int64_t h, int64_t w, int c, uint32_t seed) {
  std::vector<uint8_t> f(size_t(n * h * w * c));
  uint32_t s = seed;
  for (size_t i = 0; i < f.size(); ++i) {
    s = s * 1664525u + 1013904223u;
    f[i] = uint8_t(s >> 24);
  }
  return f;
}

bool run(l2d_model* m, const std::vector<uint8_t>& f, int64_t n, int64_t h, int64_t w, int c, int64_t oh, int64_t ow,
         bool sync_inside, Result& r) {
  l2d_tmap* io = nullptr;
  l2d_tmap_create(&io);
  const int64_t fshape[4] = {n, h, w, c}, two[1] = {2}, size[2] = {oh, ow}, params[2] = {sync_inside, 0};
  l2d_tmap_set(io, "frames", L2D_U8, 4, fshape, f.data(), f.size());
  l2d_tmap_set(io, "size", L2D_I64, 1, two, size, sizeof size);
  l2d_tmap_set(io, "params", L2D_I64, 1, two, params, sizeof params);
  bool ok = l2d_model_run(m, "frame_graph", io) == L2D_OK;
  if (!ok) std::printf("frame_graph failed: %s\n", l2d_model_last_error(m));
  r.u8.assign(size_t(n * oh * ow * 3), 0);
  ok = ok && l2d_tmap_get(io, "u8", r.u8.data(), r.u8.size()) == L2D_OK &&
       l2d_tmap_get(io, "captured", &r.captured, 4) == L2D_OK &&
       l2d_tmap_get(io, "bystanders_intact", &r.intact, 4) == L2D_OK &&
       l2d_tmap_get(io, "graph_reserved_bytes", r.reserved, sizeof r.reserved) == L2D_OK;
  l2d_tmap_free(io);
  return ok;
}

int max_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int m = a.size() == b.size() ? 0 : 256;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

}  // namespace

int main() {
  const bool self = std::getenv("L2D_TEST_SELF") != nullptr;
  int32_t available = 0;
  if (!self && (l2d_backend_available("cuda", &available) != L2D_OK || !available)) {
    std::printf("test_cuda_graph: no GPU: the CUDA backend is unavailable (test_cuda_ops prints why)   FAIL\n");
    return 77;
  }
  const char* kind = self ? "cpu" : "cuda";
  const char* sync_env = std::getenv("L2D_CUDA_SYNC");
  const bool sync_mode = sync_env && *sync_env && std::string(sync_env) != "0";
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    std::printf("%-72s%s\n", what.c_str(), ok ? "ok" : "FAIL");
    if (!ok) ++failures;
  };
  l2d_model* cpu = open_ops("cpu", nullptr);
  if (!cpu) return 1;
  for (const char* precision : {"fp32", "fp16"}) {
    const std::string opts = std::string("{\"precision\":\"") + precision + "\"}";
    // L2D_CUDA_GRAPHS is read once per context, when it is created.
    setenv("L2D_CUDA_GRAPHS", "1", 1);
    l2d_model* graphs = open_ops(kind, self ? nullptr : opts.c_str());
    setenv("L2D_CUDA_GRAPHS", "0", 1);
    l2d_model* eager = open_ops(kind, self ? nullptr : opts.c_str());
    unsetenv("L2D_CUDA_GRAPHS");
    if (!graphs || !eager) return 1;
    struct Geometry {
      int64_t h, w;
      int c;
      int64_t oh, ow;
    };
    for (const Geometry& g : {Geometry{64, 96, 3, 64, 96}, Geometry{120, 200, 4, 64, 96}}) {
      const int64_t n = 6;
      const std::vector<uint8_t> f = frames(n, g.h, g.w, g.c, uint32_t(g.h * 7 + g.c));
      const std::string tag = std::string(precision) + " " + std::to_string(g.w) + "x" + std::to_string(g.h) + "c" +
                              std::to_string(g.c) + " -> " + std::to_string(g.ow) + "x" + std::to_string(g.oh);
      Result on, off, failed, ref;
      if (!run(graphs, f, n, g.h, g.w, g.c, g.oh, g.ow, false, on) ||
          !run(eager, f, n, g.h, g.w, g.c, g.oh, g.ow, false, off) ||
          !run(graphs, f, n, g.h, g.w, g.c, g.oh, g.ow, true, failed)) {
        ++failures;
        continue;
      }
      if (!self) {
        // (L2D_CUDA_SYNC=1, gpu-check's rerun of a failed test, runs every op eagerly by design.)
        if (!sync_mode) check(on.captured == 1, tag + ": graphs on captured a graph");
        check(off.captured == 0, tag + ": L2D_CUDA_GRAPHS=0 captured nothing");
        check(failed.captured == 0, tag + ": a sync inside the region fails the capture");
        // The region frees a temporary while capturing: the graph keeps its block, reported as
        // graph_reserved_bytes (not in bytes_in_use, in the peak), and gives it back on release.
        if (!sync_mode)
          check(on.reserved[0] > 0 && on.reserved[1] == 0 && on.reserved[2] == 1,
                tag + ": graph_reserved_bytes " + std::to_string(on.reserved[0]) + " with the graph, " +
                    std::to_string(on.reserved[1]) + " after release, in the peak");
        check(off.reserved[0] == 0 && off.reserved[1] == 0, tag + ": no graph, no graph_reserved_bytes");
      }
      check(on.intact == 1, tag + ": blocks of the graph were never handed out");
      check(max_diff(on.u8, off.u8) == 0, tag + ": replays == eager frames (max diff " +
                                              std::to_string(max_diff(on.u8, off.u8)) + ")");
      check(max_diff(failed.u8, off.u8) == 0, tag + ": failed capture -> eager frames");
      if (std::string(precision) == "fp32" && g.h == g.oh && g.w == g.ow && run(cpu, f, n, g.h, g.w, g.c, g.oh, g.ow, false, ref))
        check(max_diff(on.u8, ref.u8) <= 1, tag + ": vs the CPU backend within one level (max " +
                                                std::to_string(max_diff(on.u8, ref.u8)) + ")");
    }
  }
  std::printf("test_cuda_graph: %s\n", failures ? "FAILED" : "all ok");
  return failures ? 1 : 0;
}
