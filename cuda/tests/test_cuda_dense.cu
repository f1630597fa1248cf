// test_cuda_dense: every convolution and linear-layer shape of one real frame (the table
// cuda/tests/dense_shapes.txt, derived from the networks by scripts/dense_shapes.ts: UNet at 64x64
// latents with T = 2 and 3, TAESD at 512x512, MiDaS DPT-Hybrid at 384x384) on CUDA fp32 and fp16
// against the CPU oracle, through the shared harness (op_test_harness.h). The UNet linears that feed a
// residual connection also run as linear_add (the residual in the GEMM epilogue), and the feed-forwards'
// first projections (ff.net.0.proj) as linear_geglu (the GEGLU in the own kernel's epilogue).
//
// The kernel path is chosen by L2D_KERNELS (simple | own | vendor | tune | auto, read when the contexts are
// created), so gpu-check runs this binary once per path:
//   for k in simple own vendor; do L2D_KERNELS=$k test_cuda_dense --filter S...; done
// The data are exactly representable grids (fgrid): x on 2^-4 in [-1, 1], w on 2^-6 in [-1/4, 1/4],
// bias on 2^-10 in [-1, 1], so every partial sum of every K split lies on the 2^-10 grid below 2^14
// and is exact in fp32 (K * 1/4 + 1 < 2^14 for K <= 11520). Hence our own kernels (simple, own) must
// match the oracle EXACTLY in fp32 and within half an fp16 ulp (one rounding) in fp16, whatever
// their summation order or split-K. cuDNN / cuBLASLt may use Winograd / FFT transforms, which are
// not exact: the vendor (and auto, which may pick vendor) runs use the harness's default bounds.
// Host code only.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "op_test_harness.h"

namespace {

// dense_shapes.txt next to this source (CMake passes absolute source paths, so __FILE__ locates it
// from any working directory); L2D_DENSE_SHAPES overrides.
std::string default_table() {
  const std::string self = __FILE__;
  const size_t slash = self.find_last_of('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/dense_shapes.txt";
}

struct Row {
  bool conv = false;
  std::string tag;
  // conv: N C H W O KH KW stride pt pb pl pr bias count; linear: M K N bias count
  std::vector<int64_t> v;
};

bool parse_table(const char* path, std::vector<Row>& rows, std::string& why) {
  std::ifstream f(path);
  if (!f) {
    why = std::string("cannot open ") + path;
    return false;
  }
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    Row r;
    std::string kind;
    in >> kind >> r.tag;
    r.conv = kind == "conv";
    const size_t want = r.conv ? 14 : 5;
    int64_t x;
    while (in >> x) r.v.push_back(x);
    if ((kind != "conv" && kind != "linear") || r.v.size() != want) {
      why = std::string(path) + ":" + std::to_string(lineno) + ": malformed row";
      return false;
    }
    rows.push_back(std::move(r));
  }
  return true;
}

std::string dims(const std::vector<int64_t>& v, size_t from, size_t to, const char* sep) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += (i > from ? sep : "") + std::to_string(v[i]);
  return s;
}

// The UNet linears that end in a residual connection (Backend::linear_add): attention outputs
// (to_out.0: K == N, and the motion modules' proj_in rows share their shape), feed-forward outputs
// (ff.net.2: K == 4 N); the time-embedding rows (a few tokens) are not.
bool is_residual_linear(const Row& r) {
  const int64_t M = r.v[0], K = r.v[1], N = r.v[2];
  return !r.conv && r.tag.rfind("unet", 0) == 0 && r.v[3] != 0 && M >= 64 && (K == N || K == 4 * N);
}

// The linear case c as linear_add: the residual r on the x grid (2^-4 in [-1, 1]) keeps every sum on
// the 2^-10 grid below 2^14, so the exact fp32 and one-rounding fp16 bounds of c still apply: the
// residual is added in the epilogue, before the only rounding.
l2d_test::Case with_residual(l2d_test::Case c, const Row& r) {
  const int64_t M = r.v[0], N = r.v[2];
  c.method = "linear_add";
  c.label = "linear_add" + c.label.substr(c.label.find('/'));
  auto make = c.make;
  c.make = [=](l2d_test::Rng& rng) {
    std::vector<l2d_test::Input> in = make(rng);
    in.push_back(l2d_test::fgrid("r", {M, N}, rng, 4, 1.f));
    return in;
  };
  return c;
}

// The feed-forwards' first projections (ff.net.0.proj: w [2C, K]), which the UNet runs as linear_geglu.
bool is_geglu_linear(const Row& r) {
  return !r.conv && r.tag.find("ff.net.0.proj") != std::string::npos && r.v[2] % 2 == 0;
}

// The linear case c as linear_geglu (same x, w, b): fp16 on the own path (and tune's pick) is one GEMM
// with the GEGLU in its epilogue (split-K for the motion modules' 128 / 192 rows), on vendor / simple the
// linear then the geglu kernel; fp32 is that composition on the simple kernels. GELU (erff) is not exact
// on the grid and the fused fp16 path rounds once where the unfused one rounds twice: the harness's
// default bounds on every path.
l2d_test::Case with_geglu(l2d_test::Case c, const Row& r) {
  c.method = "linear_geglu";
  c.label = "linear_geglu" + c.label.substr(c.label.find('/'));
  c.shape += " C=" + std::to_string(r.v[2] / 2);
  c.fp32 = l2d_test::fp32_default();
  c.fp16 = l2d_test::fp16_default();
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace l2d_test;
  Harness h("test_cuda_dense", argc, argv);
  const std::string table_path = std::getenv("L2D_DENSE_SHAPES") ? std::getenv("L2D_DENSE_SHAPES") : default_table();
  const char* table = table_path.c_str();
  std::vector<Row> rows;
  std::string why;
  if (!parse_table(table, rows, why)) {
    std::printf("test_cuda_dense: %s   FAIL\n", why.c_str());
    return 2;
  }
  const char* env = std::getenv("L2D_KERNELS");
  const std::string path = env && *env ? env : "auto";
  // fp32 "auto" runs the simple kernels; fp16 "auto" and "tune" may pick a vendor library.
  const bool exact32 = path != "vendor" && path != "tune", exact16 = path == "simple" || path == "own";
  std::printf("test_cuda_dense: %zu shapes from %s, L2D_KERNELS=%s (fp32 %s, fp16 %s)\n", rows.size(), table,
              path.c_str(), exact32 ? "exact" : "default bounds", exact16 ? "within 0.5 ulp" : "default bounds");

  // Which mode and vendor libraries a CUDA context of this process gets (the harness opens its own).
  int32_t available = 0;
  if (!std::getenv("L2D_TEST_SELF") && l2d_backend_available("cuda", &available) == L2D_OK && available) {
    l2d_context* probe = nullptr;
    const char* stats = nullptr;
    if (l2d_context_create("cuda", "{\"precision\":\"fp16\"}", &probe) == L2D_OK &&
        l2d_context_stats(probe, &stats) == L2D_OK) {
      const char* k = std::strstr(stats, "\"kernels\":");
      std::printf("test_cuda_dense: kernels %s\n", k ? k + 10 : stats);
    }
    if (probe) l2d_context_free(probe);
  }

  std::vector<Case> cases;
  for (const Row& r : rows) {
    Case c;
    const std::vector<int64_t>& v = r.v;
    if (r.conv) {
      const int64_t N = v[0], C = v[1], H = v[2], W = v[3], O = v[4], KH = v[5], KW = v[6], s = v[7];
      const bool bias = v[12] != 0;
      c.method = "conv2d";
      c.label = "conv" + std::to_string(KH) + "x" + std::to_string(KW) + "/" + dims(v, 0, 5, "x") + "/s" +
                std::to_string(s) + "p" + dims(v, 8, 12, "") + "/" + r.tag;
      c.shape = "x[" + dims(v, 0, 4, ",") + "] w[" + std::to_string(O) + "," + std::to_string(C) + "," +
                std::to_string(KH) + "," + std::to_string(KW) + "]";
      c.big = N * C * H * W > (int64_t(1) << 20) || N * O * H * W * C * KH * KW / (s * s) > (int64_t(1) << 28);
      const std::vector<int64_t> params{s, s, v[8], v[9], v[10], v[11]};
      c.make = [=](Rng& rng) {
        std::vector<Input> in{fgrid("x", {N, C, H, W}, rng, 4, 1.f), fgrid("w", {O, C, KH, KW}, rng, 6, 0.25f),
                              ival("params", {6}, params)};
        if (bias) in.push_back(fgrid("b", {O}, rng, 10, 1.f));
        return in;
      };
    } else {
      const int64_t M = v[0], K = v[1], Nn = v[2];
      const bool bias = v[3] != 0;
      c.method = "linear";
      c.label = "linear/" + dims(v, 0, 3, "x") + "/" + r.tag;
      c.shape = "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(Nn);
      c.big = M * K * Nn > (int64_t(1) << 28);
      c.make = [=](Rng& rng) {
        std::vector<Input> in{fgrid("x", {M, K}, rng, 4, 1.f), fgrid("w", {Nn, K}, rng, 6, 0.25f)};
        if (bias) in.push_back(fgrid("b", {Nn}, rng, 10, 1.f));
        return in;
      };
    }
    c.note = "x" + std::to_string(r.v.back()) + " per frame";
    if (exact32) c.fp32 = Bound{0, 0, 0, 0, true};
    if (exact16) c.fp16 = Bound{1e-3, 0, 1e-3, 0.5, false};  // one correctly rounded fp16 output
    cases.push_back(c);
    if (is_residual_linear(r)) cases.push_back(with_residual(c, r));
    if (is_geglu_linear(r)) cases.push_back(with_geglu(c, r));
  }
  // linear_geglu at the fused kernel's edges (small: they also run under --small): M, K, C, bias.
  //   one row, 2C = 16 on the 64-wide tile (half of its staged rows past C); ragged rows and a ragged
  //   second output half (C = 40, 72); split-K on the 64- and 128-wide tiles with and without bias
  //   (C = 24, 72); C % 8 != 0 (C = 12: the composition on every path).
  const int64_t edges[][4] = {{1, 8, 8, 1}, {130, 72, 40, 1}, {200, 1280, 24, 1}, {64, 2560, 72, 0}, {3, 16, 12, 1}};
  for (const auto& e : edges) {
    const int64_t M = e[0], K = e[1], C = e[2];
    const bool bias = e[3] != 0;
    Case c;
    c.method = "linear_geglu";
    c.label = "linear_geglu/edge/" + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(2 * C) +
              (bias ? "" : "/nobias");
    c.shape = "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(2 * C) +
              " C=" + std::to_string(C);
    c.note = "fused-kernel edge";
    c.make = [=](Rng& rng) {
      std::vector<Input> in{fgrid("x", {M, K}, rng, 4, 1.f), fgrid("w", {2 * C, K}, rng, 6, 0.25f)};
      if (bias) in.push_back(fgrid("b", {2 * C}, rng, 10, 1.f));
      return in;
    };
    cases.push_back(c);
  }
  return h.run(cases);
}
