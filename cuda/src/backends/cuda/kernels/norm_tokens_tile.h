// norm_tokens_tile.h: the index arithmetic of the fast GroupNorm's tokens output
// (gn_apply_tokens_kernel in norm_fast.cu), shared with the CPU check cuda/tests/test_norm_tokens_tile.cpp,
// which replays every CTA's reads and writes and checks that each output element is written exactly
// once, from the right input, with its own group's statistics. Plain C++ (host and device).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define L2D_TOK_HD __host__ __device__ __forceinline__
#else
#define L2D_TOK_HD inline
#endif

namespace l2d::cuda::tok {

constexpr int kS = 32;        // positions per tile: one per lane in the read phase
constexpr int kC = 64;        // channels per tile: two per lane in the write phase
constexpr int kThreads = 256;  // per CTA
constexpr int kWarps = kThreads / 32;

// The tile of CTA (bx, by, bz): image n, positions [s0, s0 + kS) (clipped to S), channels [c0, c_end).
struct Tile {
  int64_t n, s0;
  int c0, c_end;
  int g0, groups;  // the groups the channels touch: g0 .. g0 + groups - 1 (at most kC)
};

L2D_TOK_HD Tile tile_of(unsigned bx, unsigned by, unsigned bz, int C, int cg) {
  Tile t;
  t.n = int64_t(bz);
  t.s0 = int64_t(bx) * kS;
  t.c0 = int(by) * kC;
  t.c_end = t.c0 + kC < C ? t.c0 + kC : C;
  t.g0 = t.c0 / cg;
  t.groups = (t.c_end - 1) / cg - t.g0 + 1;
  return t;
}

// Grid: x over position tiles, y over channel tiles, z over images.
L2D_TOK_HD int64_t position_tiles(int64_t S) { return (S + kS - 1) / kS; }
L2D_TOK_HD int64_t channel_tiles(int64_t C) { return (C + kC - 1) / kC; }

// x [N, C, S] and y [N, S, C].
L2D_TOK_HD int64_t src_index(int64_t n, int64_t C, int64_t S, int64_t c, int64_t s) { return (n * C + c) * S + s; }
L2D_TOK_HD int64_t dst_index(int64_t n, int64_t C, int64_t S, int64_t c, int64_t s) { return (n * S + s) * C + c; }

// Read phase: warp w handles tile rows (channels c0 + r) r = w, w + kWarps, ...; lane l position
// s0 + l; the value goes to tile[r][l]. Write phase: warp w handles tile columns (positions s0 + p)
// p = w, w + kWarps, ...; lane l channels c0 + r, r = l, l + 32; the value comes from tile[r][p].
// Both loops skip channels >= c_end and positions >= S.

}  // namespace l2d::cuda::tok
