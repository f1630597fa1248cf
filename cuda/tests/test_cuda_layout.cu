// test_cuda_layout: Backend::linear_to_image (a transformer's output projection written straight
// into NCHW with bias and residual: one GEMM per image with the weight as A) on CUDA fp32 and fp16
// against the CPU oracle, through the shared harness (op_test_harness.h), at every proj_out shape of
// the SD1.5 UNet at a 64x64 latent with T = 2 and 3 rows (spatial transformers and motion modules,
// both [C, C] at 320@64x64, 640@32x32, 1280@16x16, 1280@8x8), the motion modules' 16-frame warm-up,
// MiDaS DPT-Hybrid's readout projections at 384x384, and small shapes for the other paths (no bias /
// no residual, K % 8 != 0 where the own kernel declines, odd sizes at every tile edge). The input norms' token output (group_norm_tokens) is in
// test_cuda_norm.
//
// The kernel path is L2D_KERNELS (simple | own | vendor | tune | auto, read at context creation), so
// gpu-check runs this binary once per path. linear_to_image has no vendor form (cuBLASLt's bias
// epilogue runs along the other dimension), so with the layout fusion on every path runs our own
// kernels, and the data are exact grids as in test_cuda_dense (t on 2^-4 in [-1, 1], w on 2^-6 in
// [-1/4, 1/4], bias on 2^-10, residual on 2^-4: every partial sum is exact in fp32): fp32 must match
// the oracle exactly and fp16 within half an ulp (one rounding). With L2D_FUSE switching the layout
// fusion off, the composition runs (its linear may take cuBLASLt): then the default bounds apply.
// Host code only.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "op_test_harness.h"

namespace {

using namespace l2d_test;

// Whether L2D_FUSE leaves the layout fusion on (unset, "all" or a list naming "layout").
bool layout_fused() {
  const char* env = std::getenv("L2D_FUSE");
  if (!env || !*env) return true;
  const std::string v = std::string(",") + env + ",";
  return v == ",all," || v.find(",layout,") != std::string::npos;
}

struct Shape {
  int64_t N, P, K, O, H, W;
};

std::string str(const Shape& s) {
  return "t[" + std::to_string(s.N) + "," + std::to_string(s.P) + "," + std::to_string(s.K) + "] w[" +
         std::to_string(s.O) + "," + std::to_string(s.K) + "] -> [" + std::to_string(s.N) + "," + std::to_string(s.O) +
         "," + std::to_string(s.H) + "," + std::to_string(s.W) + "]";
}

Case make_case(const std::string& label, const Shape& s, bool bias, bool residual, const std::string& note, bool big) {
  Case c;
  c.label = label;
  c.method = "linear_to_image";
  c.shape = str(s);
  c.note = note;
  c.big = big;
  c.make = [=](Rng& rng) {
    std::vector<Input> in{fgrid("t", {s.N, s.P, s.K}, rng, 4, 1.f), fgrid("w", {s.O, s.K}, rng, 6, 0.25f),
                          ival("hw", {2}, {s.H, s.W})};
    if (bias) in.push_back(fgrid("b", {s.O}, rng, 10, 1.f));
    if (residual) in.push_back(fgrid("r", {s.N, s.O, s.H, s.W}, rng, 4, 1.f));
    return in;
  };
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Harness h("test_cuda_layout", argc, argv);
  const char* env = std::getenv("L2D_KERNELS");
  const std::string path = env && *env ? env : "auto";
  const bool fused = layout_fused();
  // Fused: our kernels on every path (exact). Unfused: as test_cuda_dense (vendor may run the linear).
  const bool exact32 = fused || (path != "vendor" && path != "tune");
  const bool exact16 = fused || path == "simple" || path == "own";
  bool listing = false;  // --list / --help print the table only (a header line would break its parsers)
  for (int a = 1; a < argc; ++a) listing |= std::strcmp(argv[a], "--list") == 0 || std::strcmp(argv[a], "--help") == 0;
  if (!listing)
    std::printf("test_cuda_layout: L2D_KERNELS=%s, layout fusion %s (fp32 %s, fp16 %s)\n", path.c_str(),
                fused ? "on" : "off", exact32 ? "exact" : "default bounds",
                exact16 ? "within 0.5 ulp" : "default bounds");

  std::vector<Case> cases;
  // proj_out of the spatial transformers and motion modules (both [C, C] in SD1.5 + AnimateDiff):
  // tokens of the T streamed rows -> NCHW, + the block input.
  const int64_t levels[][2] = {{320, 64}, {640, 32}, {1280, 16}, {1280, 8}};
  for (const int64_t T : {2, 3})
    for (const auto& l : levels) {
      const int64_t C = l[0], H = l[1];
      cases.push_back(make_case("l2i/unet_T" + std::to_string(T) + "_c" + std::to_string(C) + "_" + std::to_string(H) +
                                    "x" + std::to_string(H),
                                {T, H * H, C, C, H, H}, true, true, "UNet transformer + motion-module proj_out", true));
    }
  cases.push_back(make_case("l2i/unet_warmup16_c1280_8x8", {16, 64, 1280, 1280, 8, 8}, true, true,
                            "motion-module proj_out over 16 warm-up frames", true));
  // MiDaS DPT-Hybrid at 384x384: the readout projections of reassemble 3 and 4 (24x24 patches, ViT-B
  // width 768), bias, no residual (the cls term is added afterwards, broadcast).
  cases.push_back(make_case("l2i/midas_readout_768_24x24", {1, 576, 768, 768, 24, 24}, true, false,
                            "MiDaS readout (reassemble 3, 4)", true));
  // Other paths, small: without bias / residual, K % 8 != 0 (the own kernel declines: simple),
  // sizes off every tile edge, one image, a non-square image.
  cases.push_back(make_case("l2i/small_nobias", {2, 64, 64, 48, 8, 8}, false, true, "residual only", false));
  cases.push_back(make_case("l2i/small_noresidual", {2, 64, 64, 48, 8, 8}, true, false, "bias only", false));
  cases.push_back(make_case("l2i/small_plain", {3, 35, 40, 24, 5, 7}, false, false, "neither, 5x7 image", false));
  cases.push_back(make_case("l2i/small_odd", {3, 35, 37, 45, 7, 5}, true, true, "K % 8 != 0: simple path", false));
  cases.push_back(make_case("l2i/small_edges", {1, 130, 136, 200, 10, 13}, true, true, "M, N off the tiles", false));
  for (Case& c : cases) {
    if (exact32) c.fp32 = Bound{0, 0, 0, 0, true};
    if (exact16) c.fp16 = Bound{1e-3, 0, 1e-3, 0.5, false};  // one correctly rounded fp16 output
  }
  return h.run(cases);
}
