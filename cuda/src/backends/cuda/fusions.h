// fusions.h: which fused kernels a CUDA context runs. Every fusion is an op of Backend whose
// default (core/backend.cpp) is the composition of unfused ops; the CUDA backend runs its fused
// kernel when the fusion is on here and the problem fits it, else that default. Switching one off
// is how a wrong result or a slowdown is bisected to one fusion on the GPU machine.
//
// L2D_FUSE (read once per context): "all" (the default), "none", or a comma-separated list of
// the names below (e.g. "qkv,layout": every other fusion off). Anything else is
// L2D_ERR_INVALID_ARGUMENT naming the bad entry.
#pragma once

#include <string>

namespace l2d::cuda {

struct Fusions {
  bool geglu = true;   // "geglu": linear_geglu, GEGLU in the GEMM epilogue of the feed-forward
  bool qkv = true;     // "qkv": one QKV projection; attention reads the packed [.., 3C] rows
  bool layout = true;  // "layout": no permutes at the transformer boundaries (GroupNorm writes
                       // tokens; the output projection writes NCHW with bias + residual)
  bool conv_epilogue = true;  // "conv_epilogue": per-image bias and residual in the conv GEMM
  // "all" / "none" / "a,b": the switches as L2D_FUSE would set them (for messages and stats).
  std::string describe() const;
};

// Parses L2D_FUSE (null or empty: all on). Throws L2D_ERR_INVALID_ARGUMENT on a bad value.
Fusions fusions_from_string(const char* value);
Fusions fusions_from_env();

}  // namespace l2d::cuda
