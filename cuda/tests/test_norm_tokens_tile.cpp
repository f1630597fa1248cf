// test_norm_tokens_tile: replays the fast GroupNorm's tokens-output apply pass (gn_apply_tokens_kernel
// in norm_fast.cu) on the CPU with the SAME index functions (src/backends/cuda/kernels/norm_tokens_tile.h):
// every CTA of the grid, every warp and lane of its read phase (NCHW -> shared tile) and write phase
// (tile -> [N, S, C]), and checks that
//   - the grid's tiles write every output element exactly once, with the input at the transposed
//     index (distinct values: a wrong formula cannot pass by coincidence), and read only tile cells
//     the read phase filled;
//   - each tile's channels map to groups inside the range whose statistics it merges (at most kC).
// At the UNet's transformer / motion-module norm shapes and at tile edges (C % 64 != 0, S % 32 != 0,
// one channel per group, a single position). Plain C++ (no GPU): runs in every build.
#include <cstdio>
#include <vector>

#include "backends/cuda/kernels/norm_tokens_tile.h"
#include "cpu_check.h"

using namespace l2d::cuda::tok;

namespace {

void check_shape(int64_t N, int C, int64_t S, int groups) {
  const int cg = C / groups;
  std::vector<double> x(size_t(N * C * S)), y(x.size(), -1.0);
  std::vector<int> writes(x.size(), 0);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i);
  for (unsigned bz = 0; bz < unsigned(N); ++bz)
    for (unsigned by = 0; by < unsigned(channel_tiles(C)); ++by)
      for (unsigned bx = 0; bx < unsigned(position_tiles(S)); ++bx) {
        const Tile tl = tile_of(bx, by, bz, C, cg);
        CHECK(tl.groups >= 1 && tl.groups <= kC && tl.c_end - tl.c0 <= kThreads, "tile groups %d", tl.groups);
        for (int c = tl.c0; c < tl.c_end; ++c) {
          const int gi = c / cg - tl.g0;
          CHECK(gi >= 0 && gi < tl.groups, "channel %d: group slot %d of %d", c, gi, tl.groups);
        }
        double tile[kC][kS + 1];
        bool filled[kC][kS + 1] = {};
        for (int warp = 0; warp < kWarps; ++warp)
          for (int lane = 0; lane < 32; ++lane) {
            const int64_t s = tl.s0 + lane;
            for (int r = warp; r < kC; r += kWarps)
              if (tl.c0 + r < tl.c_end && s < S) {
                tile[r][lane] = x[size_t(src_index(tl.n, C, S, tl.c0 + r, s))];
                filled[r][lane] = true;
              }
          }
        for (int warp = 0; warp < kWarps; ++warp)
          for (int lane = 0; lane < 32; ++lane)
            for (int p = warp; p < kS && tl.s0 + p < S; p += kWarps)
              for (int r = lane; r < kC; r += 32)
                if (tl.c0 + r < tl.c_end) {
                  CHECK(filled[r][p], "tile (%u,%u,%u) reads an unfilled cell [%d][%d]", bx, by, bz, r, p);
                  const int64_t d = dst_index(tl.n, C, S, tl.c0 + r, tl.s0 + p);
                  CHECK(d >= 0 && d < int64_t(y.size()), "write out of range: %lld", (long long)d);
                  if (d < 0 || d >= int64_t(y.size())) continue;
                  y[size_t(d)] = tile[r][p];
                  ++writes[size_t(d)];
                }
      }
  int64_t bad = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < C; ++c) {
        const size_t d = size_t((n * S + s) * C + c);
        if (writes[d] != 1 || y[d] != x[size_t((n * C + c) * S + s)]) ++bad;
      }
  CHECK(bad == 0, "[%lld, %d, %lld] G=%d: %lld outputs not written exactly once from their input", (long long)N, C,
        (long long)S, groups, (long long)bad);
}

}  // namespace

int main() {
  // UNet transformer / motion-module norms at a 64x64 latent (T = 3), the 16-frame warm-up.
  check_shape(3, 320, 64 * 64, 32);
  check_shape(3, 640, 32 * 32, 32);
  check_shape(3, 1280, 16 * 16, 32);
  check_shape(3, 1280, 8 * 8, 32);
  check_shape(16, 1280, 8 * 8, 32);
  // Edges: partial channel and position tiles, many groups per tile, one channel per group (kC
  // groups in a tile), a single position, a group wider than a tile.
  check_shape(2, 200, 36, 40);
  check_shape(3, 12, 35, 4);
  check_shape(1, 65, 33, 65);
  check_shape(2, 7, 1, 7);
  check_shape(1, 256, 45 * 45, 2);
  if (cpu_check::failures) {
    std::printf("test_norm_tokens_tile: %d failures\n", cpu_check::failures);
    return 1;
  }
  std::printf("test_norm_tokens_tile: all ok\n");
  return 0;
}
