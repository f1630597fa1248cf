// test_cuda_norm: GroupNorm(+SiLU) and LayerNorm on CUDA (fp32 and fp16 storage) against the CPU
// oracle through the public C ABI and the "ops" model (op_test_harness.h), at every norm shape the
// networks run: the SD1.5 UNet at a 64x64 latent with T = 2 and 3 rows (resnet norms with SiLU,
// transformer and motion-module norms without), MiDaS DPT-Hybrid at 384x384 (ResNetV2 GroupNorms,
// ViT LayerNorms; DPT-Large's C = 1024 too), CLIP at 77 tokens; each GroupNorm shape with and
// without SiLU. TAESD has no norm layers. Plus the shapes that take the kernels' other paths
// (scalar fallback, many chunks per group, a LayerNorm row too wide for registers) and fp16 range
// stress (|x| up to 1e4, means of 1e3..1e4, one outlier per group). GroupNorm written as tokens
// (group_norm_tokens, the transformer / motion-module input norms) at those shapes too.
// Which kernels run is the context's L2D_NORM (simple | fast, read at context creation): the GPU
// check runs this binary under both. Bounds are the harness defaults (the ones test_cuda_ops uses).
// `--list` prints the cases without a GPU; without one the binary exits 77. Host code only.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "op_test_harness.h"

using namespace l2d_test;
using In = std::vector<Input>;

namespace {

class Table {
 public:
  std::vector<Case> cases;
  Case& add(const std::string& label, const std::string& method, const std::string& shape, const std::string& note,
            bool big, std::function<In(Rng&)> make) {
    cases.push_back(Case{label, method, std::move(make)});
    Case& c = cases.back();
    c.shape = shape;
    c.note = note;
    c.big = big;
    return c;
  }
};

std::string dims_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string mb(int64_t elems) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fMB(fp16)", double(elems) * 2 / 1e6);
  return buf;
}

// ---- GroupNorm: x [N, C, H, W], params [groups, eps, silu] ----

struct GnShape {
  int64_t C, H;  // H = W
  const char* where;
};

// Every GroupNorm of the SD1.5 UNet at a 64x64 latent (32 groups): resnet norm1/norm2 (with SiLU,
// eps 1e-5) at every (channels, size) the down/mid/up blocks see, including the skip-concatenated
// inputs of the up blocks; the transformer / motion-module norms (eps 1e-6, no SiLU) are the
// 320@64, 640@32, 1280@16 and 1280@8 entries.
const GnShape kUnetGn[] = {
    {320, 64, "down0 resnets, up3 norm2, conv_norm_out, transformer+motion norm"},
    {640, 64, "up3.resnets.1-2 norm1 (skip concat)"},
    {960, 64, "up3.resnets.0 norm1 (skip concat)"},
    {320, 32, "down1.resnets.0 norm1"},
    {640, 32, "down1 resnets, up2 norm2, transformer+motion norm"},
    {960, 32, "up2.resnets.2 norm1"},
    {1280, 32, "up2.resnets.1 norm1"},
    {1920, 32, "up2.resnets.0 norm1"},
    {640, 16, "down2.resnets.0 norm1"},
    {1280, 16, "down2 resnets, up1 norm2, transformer+motion norm"},
    {1920, 16, "up1.resnets.2 norm1"},
    {2560, 16, "up1.resnets.0-1 norm1"},
    {1280, 8, "down3, mid resnets, mid transformer+motion norm"},
    {2560, 8, "up0 resnets norm1"},
};

// MiDaS DPT-Hybrid (vit_base_r50_s16_384) ResNetV2 at 384x384, N = 1, 32 groups, eps 1e-5.
const GnShape kMidasGn[] = {
    {64, 192, "stem norm"},
    {64, 96, "stage0 norm1/norm2"},
    {256, 96, "stage0 norm3, downsample norm"},
    {128, 96, "stage1.blocks.0 norm1"},
    {128, 48, "stage1 norm2, norm1"},
    {512, 48, "stage1 norm3, downsample norm"},
    {256, 48, "stage2.blocks.0 norm1"},
    {256, 24, "stage2 norm2, norm1"},
    {1024, 24, "stage2 norm3, downsample norm"},
};

Input gn_params(int groups, float eps, bool silu) {
  return fval("params", {3}, {float(groups), eps, silu ? 1.f : 0.f});
}

void add_gn(Table& t, const std::string& label, const std::vector<int64_t>& shape, int groups, float eps, bool silu,
            const std::string& note, bool big) {
  const int64_t C = shape[1];
  const int64_t elems = numel(shape);
  t.add(label, "group_norm", dims_str(shape) + " G=" + std::to_string(groups) + " " + mb(elems), note, big,
        [shape, C, groups, eps, silu](Rng& r) {
          return In{fin("x", shape, r, -2, 3), fin("gamma", {C}, r), fin("beta", {C}, r), gn_params(groups, eps, silu)};
        });
}

void group_norm_cases(Table& t) {
  for (const int64_t T : {2, 3})
    for (const GnShape& s : kUnetGn)
      for (const bool silu : {true, false}) {
        const std::string label = "gn/unet_T" + std::to_string(T) + "_c" + std::to_string(s.C) + "_" +
                                  std::to_string(s.H) + "x" + std::to_string(s.H) + (silu ? "_silu" : "");
        add_gn(t, label, {T, s.C, s.H, s.H}, 32, silu ? 1e-5f : 1e-6f, silu, std::string("UNet ") + s.where, true);
      }
  for (const GnShape& s : kMidasGn)
    for (const bool silu : {false, true}) {
      const std::string label = "gn/midas_c" + std::to_string(s.C) + "_" + std::to_string(s.H) + "x" +
                                std::to_string(s.H) + (silu ? "_silu" : "");
      add_gn(t, label, {1, s.C, s.H, s.H}, 32, 1e-5f, silu, std::string("MiDaS ") + s.where, s.H >= 48);
    }
  // The fast kernels' other paths, small (the compute-sanitizer shapes with the MiDaS 24x24 ones,
  // which take the split path): groups of one chunk run one kernel, larger ones two.
  add_gn(t, "gn/small_odd_spatial", {2, 64, 9, 11}, 32, 1e-5f, true, "S % 4 != 0: scalar path, one kernel", false);
  add_gn(t, "gn/split_odd_spatial", {1, 64, 45, 45}, 32, 1e-5f, true, "S % 4 != 0: scalar path, split groups", false);
  add_gn(t, "gn/small_s4", {3, 64, 2, 2}, 16, 1e-5f, false, "S = 4: float4 in fp32, scalar in fp16", false);
  add_gn(t, "gn/small_vec", {2, 320, 8, 8}, 32, 1e-6f, true, "8x8 UNet level at N=2, 16-byte vectors", false);
  add_gn(t, "gn/small_3d", {2, 64, 3, 5, 8}, 8, 1e-5f, false, "5-D input (S = 3*5*8)", false);
  add_gn(t, "gn/one_group_many_chunks", {1, 64, 128, 128}, 1, 1e-5f, true, "1 group of 1M elements: many chunks", true);
  add_gn(t, "gn/many_slabs", {64, 32, 4, 4}, 32, 1e-5f, false, "2048 groups of 16 elements", false);
}

// ---- GroupNorm written as tokens (group_norm_tokens): x [N, C, H, W] -> y [N, H*W, C] ----

void add_gn_tokens(Table& t, const std::string& label, const std::vector<int64_t>& shape, int groups, float eps,
                   bool silu, const std::string& note, bool big) {
  const int64_t C = shape[1];
  t.add(label, "group_norm_tokens", dims_str(shape) + " G=" + std::to_string(groups) + " " + mb(numel(shape)), note,
        big, [shape, C, groups, eps, silu](Rng& r) {
          return In{fin("x", shape, r, -2, 3), fin("gamma", {C}, r), fin("beta", {C}, r), gn_params(groups, eps, silu)};
        });
}

void group_norm_tokens_cases(Table& t) {
  // The spatial transformers' and motion modules' input norms (eps 1e-6, no SiLU; the motion
  // modules stream one frame per row, so both see N = T) at the 64/32/16/8 levels of a 64x64 latent.
  const int64_t levels[][2] = {{320, 64}, {640, 32}, {1280, 16}, {1280, 8}};
  for (const int64_t T : {2, 3})
    for (const auto& s : levels)
      add_gn_tokens(t,
                    "gnt/unet_T" + std::to_string(T) + "_c" + std::to_string(s[0]) + "_" + std::to_string(s[1]) + "x" +
                        std::to_string(s[1]),
                    {T, s[0], s[1], s[1]}, 32, 1e-6f, false, "UNet transformer + motion-module norm, as tokens", true);
  // The motion modules' warm-up: the frames of one row in the batch (16 at the 8x8 level).
  add_gn_tokens(t, "gnt/unet_warmup16_c1280_8x8", {16, 1280, 8, 8}, 32, 1e-6f, false,
                "motion-module norm over 16 warm-up frames", false);
  // The tiled transpose's edges and the fast kernels' other paths, small: partial position and
  // channel tiles, tiles spanning many groups (cg = 3), the scalar path (S % 4 != 0), split groups,
  // SiLU, a 5-D input.
  add_gn_tokens(t, "gnt/small_edges", {2, 200, 6, 6}, 40, 1e-5f, true, "C % 64 != 0, S % 32 != 0, cg = 5", false);
  add_gn_tokens(t, "gnt/small_cg3", {3, 12, 5, 7}, 4, 1e-6f, false, "S = 35: scalar path, 4 groups in one tile", false);
  add_gn_tokens(t, "gnt/small_vec", {2, 320, 8, 8}, 32, 1e-6f, false, "8x8 UNet level at N=2, 16-byte vectors", false);
  add_gn_tokens(t, "gnt/split_odd_spatial", {1, 64, 45, 45}, 32, 1e-5f, true, "S % 4 != 0: scalar path, split groups",
                false);
  add_gn_tokens(t, "gnt/small_3d", {2, 64, 3, 5, 8}, 8, 1e-5f, false, "5-D input (S = 3*5*8)", false);
  t.add("stress/gnt_mean1e4_small", "group_norm_tokens", "[2,64,8,8] G=32", "mean 1e4, as tokens", false, [](Rng& r) {
    Input x = fgrid("x", {2, 64, 8, 8}, r, -3, 40.f);
    for (float& v : x.f) v += 1e4f;
    return In{x, fin("gamma", {64}, r), fin("beta", {64}, r), gn_params(32, 1e-5f, false)};
  });
}

// ---- LayerNorm: x [..., C], eps [1] ----

void add_ln(Table& t, const std::string& label, const std::vector<int64_t>& shape, float eps, const std::string& note,
            bool big) {
  const int64_t C = shape.back();
  t.add(label, "layer_norm", dims_str(shape) + " " + mb(numel(shape)), note, big, [shape, C, eps](Rng& r) {
    return In{fin("x", shape, r, -2, 3), fin("gamma", {C}, r), fin("beta", {C}, r), fval("eps", {1}, {eps})};
  });
}

void layer_norm_cases(Table& t) {
  // UNet transformer norm1-3 ([N, HW, C]) and motion-module norms ([B, 1, P, C] while streaming).
  const int64_t unet[][2] = {{320, 64}, {640, 32}, {1280, 16}, {1280, 8}};
  for (const int64_t T : {2, 3})
    for (const auto& s : unet) {
      const int64_t C = s[0], P = s[1] * s[1];
      add_ln(t, "ln/unet_T" + std::to_string(T) + "_c" + std::to_string(C) + "_" + std::to_string(P) + "tok", {T, P, C},
             1e-5f, "UNet transformer / motion-module LayerNorm", true);
    }
  add_ln(t, "ln/clip_77x768", {1, 77, 768}, 1e-5f, "CLIP text encoder", false);
  add_ln(t, "ln/midas_vit_577x768", {1, 577, 768}, 1e-6f, "MiDaS DPT-Hybrid ViT-B", false);
  add_ln(t, "ln/midas_vit_577x1024", {1, 577, 1024}, 1e-6f, "DPT-Large ViT-L", false);
  // Other paths: C not a multiple of the vector width (simple fallback), C = 40 (under a warp of
  // vectors), the widest row held in registers (fp16 4096 / fp32 2048) and one beyond it.
  add_ln(t, "ln/small_c40", {5, 40}, 1e-6f, "C < 32 vectors", false);
  add_ln(t, "ln/small_c77", {3, 7, 77}, 1e-5f, "C % 4 != 0: simple fallback", false);
  add_ln(t, "ln/c1000", {33, 1000}, 1e-5f, "fp32 float4 path, fp16 fallback (1000 % 8 != 0)", false);
  add_ln(t, "ln/c2048", {17, 2048}, 1e-5f, "widest fp32 row in registers", false);
  add_ln(t, "ln/c4096", {9, 4096}, 1e-5f, "widest fp16 row in registers, fp32 fallback", false);
  add_ln(t, "ln/c4104", {5, 4104}, 1e-5f, "too wide for registers: simple fallback", false);
}

// ---- fp16 range stress (inputs exactly representable in fp16: both devices see the oracle's data) ----

void stress_cases(Table& t) {
  for (const bool silu : {false, true}) {
    t.add(std::string("stress/gn_mean1e4_c320_64x64") + (silu ? "_silu" : ""), "group_norm", "[2,320,64,64] G=32",
          "mean 1e4, std ~25: cancellation in the variance", true, [silu](Rng& r) {
            Input x = fgrid("x", {2, 320, 64, 64}, r, -3, 40.f);  // multiples of 8 in [-40, 40]
            for (float& v : x.f) v += 1e4f;                        // exact in fp16 (ulp 8 there)
            return In{x, fin("gamma", {320}, r), fin("beta", {320}, r), gn_params(32, 1e-5f, silu)};
          });
  }
  t.add("stress/gn_abs1e4_c640_32x32", "group_norm", "[3,640,32,32] G=32", "|x| <= 1e4, zero mean", true, [](Rng& r) {
    return In{fgrid("x", {3, 640, 32, 32}, r, -3, 1e4f), fin("gamma", {640}, r), fin("beta", {640}, r),
              gn_params(32, 1e-5f, true)};
  });
  t.add("stress/gn_outlier_midas_c64_192x192", "group_norm", "[1,64,192,192] G=32",
        "one 1e4 outlier per group in [-2, 2] data (the chunk merge must not cancel)", true, [](Rng& r) {
          Input x = fgrid("x", {1, 64, 192, 192}, r, 4, 2.f);  // multiples of 1/16 in [-2, 2]
          const int64_t slab = 2 * 192 * 192;
          for (int64_t g = 0; g < 32; ++g) x.f[size_t(g * slab + int64_t(r.next() % uint32_t(slab)))] = 1e4f;
          return In{x, fin("gamma", {64}, r), fin("beta", {64}, r), gn_params(32, 1e-5f, false)};
        });
  t.add("stress/gn_mean1e4_small", "group_norm", "[2,64,8,8] G=32", "mean 1e4 at a small (sanitizer) shape", false,
        [](Rng& r) {
          Input x = fgrid("x", {2, 64, 8, 8}, r, -3, 40.f);
          for (float& v : x.f) v += 1e4f;
          return In{x, fin("gamma", {64}, r), fin("beta", {64}, r), gn_params(32, 1e-5f, true)};
        });
  t.add("stress/ln_mean1e3_unet_c320", "layer_norm", "[2,4096,320]", "mean 1e3, std ~4.6", true, [](Rng& r) {
    Input x = fgrid("x", {2, 4096, 320}, r, 1, 8.f);  // multiples of 0.5 in [-8, 8]
    for (float& v : x.f) v += 1000.f;                 // exact in fp16 (ulp 0.5 there)
    return In{x, fin("gamma", {320}, r), fin("beta", {320}, r), fval("eps", {1}, {1e-5f})};
  });
  t.add("stress/ln_abs1e4_clip", "layer_norm", "[1,77,768]", "|x| <= 1e4", false, [](Rng& r) {
    return In{fgrid("x", {1, 77, 768}, r, -3, 1e4f), fin("gamma", {768}, r), fin("beta", {768}, r),
              fval("eps", {1}, {1e-5f})};
  });
}

// A bad L2D_NORM is a clear error at context creation (names the variable), not a silent default.
// Returns the number of failures (0 or 1).
int check_bad_env() {
  const char* saved = std::getenv("L2D_NORM");
  const std::string keep = saved ? saved : "";
  setenv("L2D_NORM", "fastest", 1);
  l2d_context* bad = nullptr;
  const l2d_status st = l2d_context_create("cuda", nullptr, &bad);
  const bool ok = st == L2D_ERR_INVALID_ARGUMENT && std::strstr(l2d_last_error(), "L2D_NORM") != nullptr;
  std::printf("%-40s status %d%s\n", "env/L2D_NORM=fastest", int(st), ok ? "" : "   FAIL");
  if (bad) l2d_context_free(bad);
  if (saved) setenv("L2D_NORM", keep.c_str(), 1);
  else unsetenv("L2D_NORM");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Harness h("test_cuda_norm", argc, argv);
  Table t;
  group_norm_cases(t);
  group_norm_tokens_cases(t);
  layer_norm_cases(t);
  stress_cases(t);
  bool listing = false;
  // --list / --help (and bad usage) print and exit without touching a backend: no env check then.
  for (int a = 1; a < argc; ++a)
    listing |= std::strncmp(argv[a], "--", 2) == 0 && std::strcmp(argv[a], "--small") != 0 &&
               std::strncmp(argv[a], "--filter", 8) != 0;
  int env_failures = 0;
  if (!listing) {
    const char* norm = std::getenv("L2D_NORM");
    std::printf("test_cuda_norm: L2D_NORM=%s\n", norm && *norm ? norm : "(unset: simple)");
    int32_t available = 0;
    if (!std::getenv("L2D_TEST_SELF") && l2d_backend_available("cuda", &available) == L2D_OK && available)
      env_failures = check_bad_env();
  }
  const int rc = h.run(t.cases);
  return rc != 0 ? rc : (env_failures ? 1 : 0);
}
