// test_cuda_conv_fused: Backend::conv2d_fused (convolution + bias [O] + image bias [N, O] or [1, O]
// + residual in the GEMM epilogue) on CUDA fp32 and fp16 against the CPU oracle, through the shared
// harness (op_test_harness.h), at every resnet convolution of SD1.5's UNet at 512x512 (64x64 latents)
// with T = 2 and 3 images per call (the stream batch):
//   conv1: x [T, Cin, S, S] -> [T, Cout, S, S], bias [Cout] (conv1.b) + image bias [T, Cout] (time_proj(temb));
//   conv2: x [T, Cout, S, S] -> [T, Cout, S, S], bias [Cout], residual = the skip [T, Cout, S, S];
// and every TAESD block's last convolution at 512x512 (64 -> 64 channels, 3x3, bias, residual = the skip;
// 64x64 to 512x512, batches of 1 and 2: decode, and the frame and depth encodes together);
// plus small odd shapes (tile edges, a pointwise conv with a residual, asymmetric padding) that
// --small keeps for the sanitizer runs.
//
// The kernel path is chosen by L2D_KERNELS (read when the contexts are created) and the fusion by
// L2D_FUSE, so gpu-check runs this binary once per path and once unfused:
//   for k in simple own vendor; do L2D_KERNELS=$k test_cuda_conv_fused; done; L2D_FUSE=none test_cuda_conv_fused
// Data as in test_cuda_dense: exactly representable grids (x and the residual on 2^-4 in [-1, 1], w
// on 2^-6 in [-1/4, 1/4], both biases on 2^-10 in [-1/2, 1/2]), so every partial sum lies on the 2^-10
// grid below 2^14 (K * 1/4 + 2 < 2^14 for K <= 23040) and is exact in fp32: our kernels (simple, own)
// must match the oracle exactly in fp32 and within half an fp16 ulp in fp16 (biases and residual are
// added before the one rounding; the two biases' sum, made first, is exact on the grid even in fp16).
// cuDNN (vendor, and auto/tune, which may pick it) rounds after the convolution and
// after each AddTensor, and may use inexact transforms: those runs, and L2D_FUSE=none (conv2d then
// Adds, three roundings), use the harness's default bounds. Host code only.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "op_test_harness.h"

namespace {

struct ConvShape {
  const char* role;  // "conv1" (bias per image) or "conv2" (bias per channel + residual)
  int64_t cin, cout, side;
};

// The distinct resnet convolutions of SD1.5 at 64x64 latents: down blocks (320, 640, 1280, 1280; two
// resnets each, the first changes the channels), the mid block (two at 1280 x 8x8) and the up blocks
// (three resnets each, input = previous output + a skip). conv2 always maps Cout -> Cout.
std::vector<ConvShape> sd15_resnet_convs() {
  std::vector<ConvShape> out;
  auto add = [&](const char* role, int64_t cin, int64_t cout, int64_t side) {
    for (const ConvShape& s : out)
      if (std::string(s.role) == role && s.cin == cin && s.cout == cout && s.side == side) return;
    out.push_back({role, cin, cout, side});
  };
  const int64_t ch[4] = {320, 640, 1280, 1280};
  std::vector<std::pair<int64_t, int64_t>> skips{{320, 64}};  // (channels, side) of every down output
  int64_t c = 320, side = 64;
  for (int b = 0; b < 4; ++b) {
    for (int r = 0; r < 2; ++r) {
      add("conv1", c, ch[b], side);
      add("conv2", ch[b], ch[b], side);
      c = ch[b];
      skips.push_back({c, side});
    }
    if (b < 3) {
      side /= 2;  // downsampler
      skips.push_back({c, side});
    }
  }
  for (int r = 0; r < 2; ++r) {  // mid block
    add("conv1", c, c, side);
    add("conv2", c, c, side);
  }
  const int64_t up_ch[4] = {1280, 1280, 640, 320};
  for (int b = 0; b < 4; ++b) {
    for (int r = 0; r < 3; ++r) {
      const int64_t skip = skips.back().first;
      skips.pop_back();
      add("conv1", c + skip, up_ch[b], side);
      add("conv2", up_ch[b], up_ch[b], side);
      c = up_ch[b];
    }
    if (b < 3) side *= 2;  // upsampler
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace l2d_test;
  Harness h("test_cuda_conv_fused", argc, argv);
  const char* kernels = std::getenv("L2D_KERNELS");
  const char* fuse = std::getenv("L2D_FUSE");
  const std::string path = kernels && *kernels ? kernels : "auto";
  const bool fused = !(fuse && *fuse) || std::strstr(fuse, "all") || std::strstr(fuse, "conv_epilogue");
  // fp32 "auto" runs the simple kernels; fp16 "auto" and "tune" may pick cuDNN.
  const bool exact32 = fused && path != "vendor" && path != "tune";
  const bool exact16 = fused && (path == "simple" || path == "own");
  std::printf("test_cuda_conv_fused: L2D_KERNELS=%s L2D_FUSE=%s (fp32 %s, fp16 %s)\n", path.c_str(),
              fuse && *fuse ? fuse : "all", exact32 ? "exact" : "default bounds",
              exact16 ? "within 0.5 ulp" : "default bounds");

  std::vector<Case> cases;
  // One conv2d_fused case: x [N, C, H, W], w [O, C, k, k], stride/padding p, a bias [O] or not, an image
  // bias "image" ([N, O]) / "one" ([1, O]) / "none", a residual or not.
  auto add_case = [&](const std::string& label, const std::string& note, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t O, int64_t k, std::vector<int64_t> p, bool bias, const std::string& image_bias,
                      bool residual) {
    Case c;
    c.method = "conv2d_fused";
    c.label = label;
    c.note = note;
    const int64_t Ho = (H + p[2] + p[3] - k) / p[0] + 1, Wo = (W + p[4] + p[5] - k) / p[1] + 1;
    c.shape = "x[" + std::to_string(N) + "," + std::to_string(C) + "," + std::to_string(H) + "," + std::to_string(W) +
              "] w[" + std::to_string(O) + "," + std::to_string(C) + "," + std::to_string(k) + "," + std::to_string(k) +
              "]" + (bias ? " b[O]" : "") + (image_bias == "image" ? " bn[N,O]" : image_bias == "one" ? " bn[1,O]" : "") +
              (residual ? " +r" : "");
    c.big = N * C * H * W > (int64_t(1) << 20) || N * O * Ho * Wo * C * k * k > (int64_t(1) << 28);
    c.make = [=](Rng& rng) {
      std::vector<Input> in{fgrid("x", {N, C, H, W}, rng, 4, 1.f), fgrid("w", {O, C, k, k}, rng, 6, 0.25f),
                            ival("params", {6}, p)};
      if (bias) in.push_back(fgrid("b", {O}, rng, 10, 0.5f));
      if (image_bias != "none") in.push_back(fgrid("bn", {image_bias == "image" ? N : 1, O}, rng, 10, 0.5f));
      if (residual) in.push_back(fgrid("r", {N, O, Ho, Wo}, rng, 4, 1.f));
      return in;
    };
    if (exact32) c.fp32 = Bound{0, 0, 0, 0, true};
    if (exact16) c.fp16 = Bound{1e-3, 0, 1e-3, 0.5, false};  // one correctly rounded fp16 output
    cases.push_back(c);
  };

  // Small shapes first (kept by --small): tile edges, every bias form, the pointwise (dense B) and
  // asymmetric-padding (no cuDNN form) paths.
  const std::vector<int64_t> same1{1, 1, 1, 1, 1, 1};
  add_case("small/3x3/b+bn+res", "tile edges, every term", 3, 5, 9, 7, 6, 3, same1, true, "image", true);
  add_case("small/3x3/b+bn", "tile edges (resnet conv1, stream)", 3, 8, 9, 7, 6, 3, same1, true, "image", false);
  add_case("small/3x3/b+bn1", "one image-bias row (conv1, warmup)", 4, 8, 9, 7, 6, 3, same1, true, "one", false);
  add_case("small/3x3/bn+res", "image bias alone", 3, 8, 9, 7, 6, 3, same1, false, "image", true);
  add_case("small/3x3/b+res", "tile edges (resnet conv2)", 2, 8, 9, 7, 6, 3, same1, true, "none", true);
  add_case("small/1x1/b+res", "pointwise: dense B", 2, 8, 5, 6, 7, 1, {1, 1, 0, 0, 0, 0}, true, "none", true);
  add_case("small/3x3s2/res", "TF SAME: no cuDNN form", 1, 8, 10, 10, 6, 3, {2, 2, 0, 1, 0, 1}, false, "none", true);
  add_case("small/3x3/b+bn+res/c16", "16-byte rows", 2, 16, 16, 16, 24, 3, same1, true, "image", true);

  for (const int64_t T : {2, 3}) {
    for (const ConvShape& s : sd15_resnet_convs()) {
      const bool conv1 = std::string(s.role) == "conv1";
      const std::string label = std::string("unet-T") + std::to_string(T) + "/" + s.role + "/" + std::to_string(s.cin) +
                                "->" + std::to_string(s.cout) + "/" + std::to_string(s.side) + "x" +
                                std::to_string(s.side);
      add_case(label, conv1 ? "resnet conv1 + time embedding (stream)" : "resnet conv2 + skip", T, s.cin, s.side,
               s.side, s.cout, 3, same1, true, conv1 ? "image" : "none", !conv1);
    }
  }
  for (const int64_t N : {1, 2})
    for (const int64_t side : {64, 128, 256, 512})
      add_case("taesd-N" + std::to_string(N) + "/block.conv.4/" + std::to_string(side) + "x" + std::to_string(side),
               "TAESD block: relu(conv + skip)", N, 64, side, side, 64, 3, same1, true, "none", true);
  return h.run(cases);
}
