// test_cuda_ops: every Backend op on random data, CUDA (fp32 and fp16) against the CPU oracle,
// through the public C ABI and the "ops" model (ggml test-backend-ops style). Prints max-abs and
// relative-L2 error per op and precision; exits 1 on any failure. Without a GPU it prints
// "no GPU" and exits 0. Host code only (built by nvcc just because it lives with the CUDA build).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "l2d.h"

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() & 0xFFFFFF) / float(0x1000000); }
};

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// One input of a case: float data (random unless given) or int64 data.
struct Input {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  bool is_int = false;
};

Input fin(const std::string& name, std::vector<int64_t> shape, Rng& rng, float lo = -1.f, float hi = 1.f) {
  Input in{name, shape, {}, {}, false};
  in.f.resize(size_t(numel(shape)));
  for (float& v : in.f) v = rng.uniform(lo, hi);
  return in;
}
Input fval(const std::string& name, std::vector<int64_t> shape, std::vector<float> v) { return {name, shape, v, {}, false}; }
Input ival(const std::string& name, std::vector<int64_t> shape, std::vector<int64_t> v) { return {name, shape, {}, v, true}; }

struct Case {
  std::string label, method;
  std::vector<Input> inputs;
  std::vector<std::string> outputs{"y"};
  int expect_status = L2D_OK;
};

struct Backend {
  const char* name;
  l2d_context* ctx = nullptr;
  l2d_model* model = nullptr;
};

l2d_tmap* build(const Case& c) {
  l2d_tmap* m = nullptr;
  l2d_tmap_create(&m);
  for (const Input& in : c.inputs) {
    if (in.is_int)
      l2d_tmap_set(m, in.name.c_str(), L2D_I64, int32_t(in.shape.size()), in.shape.data(), in.i.data(), in.i.size() * 8);
    else
      l2d_tmap_set(m, in.name.c_str(), L2D_F32, int32_t(in.shape.size()), in.shape.data(), in.f.data(), in.f.size() * 4);
  }
  return m;
}

bool get(l2d_tmap* m, const std::string& name, std::vector<float>& out, std::vector<int64_t>& shape) {
  int32_t dtype = 0, ndim = 0;
  int64_t s[L2D_MAX_DIMS];
  if (l2d_tmap_info(m, name.c_str(), &dtype, &ndim, s) != L2D_OK || dtype != L2D_F32) return false;
  shape.assign(s, s + ndim);
  out.resize(size_t(numel(shape)));
  return l2d_tmap_get(m, name.c_str(), out.data(), out.size() * 4) == L2D_OK;
}

int failures = 0;

void run_case(const Case& c, Backend& ref, std::vector<Backend>& devs) {
  l2d_tmap* io_ref = build(c);
  const l2d_status st_ref = l2d_model_run(ref.model, c.method.c_str(), io_ref);
  for (Backend& d : devs) {
    const bool fp16 = std::strstr(d.name, "16") != nullptr;
    l2d_tmap* io = build(c);
    const l2d_status st = l2d_model_run(d.model, c.method.c_str(), io);
    if (c.expect_status != L2D_OK) {
      const bool ok = st == c.expect_status && st_ref == c.expect_status;
      std::printf("%-34s %-10s status cpu=%d dev=%d (want %d)%s\n", c.label.c_str(), d.name, int(st_ref), int(st),
                  c.expect_status, ok ? "" : "   FAIL");
      if (!ok) {
        ++failures;
        std::printf("    dev error: %s\n", l2d_model_last_error(d.model));
      }
      l2d_tmap_free(io);
      continue;
    }
    if (st_ref != L2D_OK || st != L2D_OK) {
      std::printf("%-34s %-10s run failed: cpu=%d dev=%d: %s | %s   FAIL\n", c.label.c_str(), d.name, int(st_ref), int(st),
                  l2d_model_last_error(ref.model), l2d_model_last_error(d.model));
      ++failures;
      l2d_tmap_free(io);
      continue;
    }
    for (const std::string& out : c.outputs) {
      std::vector<float> a, b;
      std::vector<int64_t> sa, sb;
      if (!get(io_ref, out, a, sa) || !get(io, out, b, sb) || sa != sb) {
        std::printf("%-34s %-10s output %s missing or shape mismatch   FAIL\n", c.label.c_str(), d.name, out.c_str());
        ++failures;
        continue;
      }
      double max_abs = 0, num = 0, den = 0;
      bool nan = false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(b[i]) != std::isnan(a[i])) nan = true;
        if (std::isnan(a[i]) || std::isinf(a[i])) continue;
        const double e = double(b[i]) - double(a[i]);
        max_abs = std::fmax(max_abs, std::fabs(e));
        num += e * e;
        den += double(a[i]) * double(a[i]);
      }
      const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
      const double tol = fp16 ? 1e-2 : 2e-5;
      const bool ok = !nan && rel <= tol;
      std::printf("%-34s %-10s %-9s max_abs %.3e  rel_l2 %.3e%s\n", c.label.c_str(), d.name, out.c_str(), max_abs, rel,
                  ok ? "" : (nan ? "   FAIL (NaN)" : "   FAIL"));
      if (!ok) ++failures;
    }
    l2d_tmap_free(io);
  }
  l2d_tmap_free(io_ref);
}

std::vector<Case> make_cases() {
  Rng r(1234);
  std::vector<Case> cs;
  auto add = [&](const std::string& label, const std::string& method, std::vector<Input> in) {
    cs.push_back(Case{label, method, std::move(in)});
    return &cs.back();
  };
  // elementwise
  const char* unames[] = {"silu", "relu", "gelu_erf", "gelu_tanh", "quick_gelu", "tanh", "sigmoid", "affine", "clamp"};
  for (int op = 0; op < 9; ++op)
    add(std::string("unary/") + unames[op], "unary",
        {fin("x", {3, 37, 5}, r, -4, 4), fval("params", {3}, {float(op), op == 8 ? -0.5f : 1.5f, op == 8 ? 0.7f : -0.5f})});
  const char* bnames[] = {"add", "sub", "mul", "div"};
  for (int op = 0; op < 4; ++op) {
    add(std::string("binary/same/") + bnames[op], "binary",
        {fin("a", {4, 33, 7}, r), fin("b", {4, 33, 7}, r, 0.5f, 1.5f), fval("op", {1}, {float(op)})});
    add(std::string("binary/bcast/") + bnames[op], "binary",
        {fin("a", {2, 3, 4, 5}, r), fin("b", {3, 1, 5}, r, 0.5f, 1.5f), fval("op", {1}, {float(op)})});
  }
  add("binary/bcast2", "binary", {fin("a", {2, 1, 5}, r), fin("b", {4, 1}, r, 0.5f, 1.5f), fval("op", {1}, {2.f})});
  add("binary/bias_nchw", "binary", {fin("a", {2, 320, 8, 8}, r), fin("b", {1, 320, 1, 1}, r), fval("op", {1}, {0.f})});
  add("geglu", "geglu", {fin("x", {2, 7, 80}, r, -3, 3)});
  // layout
  add("permute/0231", "permute", {fin("x", {2, 3, 4, 5}, r), ival("perm", {4}, {0, 2, 3, 1})});
  add("permute/3102", "permute", {fin("x", {2, 3, 4, 5}, r), ival("perm", {4}, {3, 1, 0, 2})});
  add("permute/nchw_tokens", "permute", {fin("x", {2, 320, 16, 16}, r), ival("perm", {4}, {0, 2, 3, 1})});
  add("slice/step2", "slice", {fin("x", {4, 6, 10}, r), ival("params", {4}, {1, 1, 6, 2})});
  add("slice/last", "slice", {fin("x", {4, 6, 10}, r), ival("params", {4}, {-1, 3, 10, 1})});
  add("concat/dim1", "concat", {fin("a", {2, 3, 5}, r), fin("b", {2, 4, 5}, r), ival("dim", {1}, {1})});
  add("concat/dim-1", "concat", {fin("a", {2, 3, 5}, r), fin("b", {2, 3, 2}, r), ival("dim", {1}, {-1})});
  // dense
  add("linear/clip", "linear", {fin("x", {2, 77, 768}, r), fin("w", {320, 768}, r, -0.05f, 0.05f), fin("b", {320}, r)});
  add("linear/odd_nobias", "linear", {fin("x", {5, 13}, r), fin("w", {7, 13}, r)});
  add("linear/m1", "linear", {fin("x", {1, 40}, r), fin("w", {33, 40}, r), fin("b", {33}, r)});
  add("linear/big", "linear", {fin("x", {4096, 320}, r), fin("w", {640, 320}, r, -0.1f, 0.1f), fin("b", {640}, r)});
  add("matmul/batched", "matmul", {fin("a", {3, 33, 17}, r), fin("b", {3, 17, 45}, r)});
  add("matmul/bcast_a", "matmul", {fin("a", {1, 64, 40}, r), fin("b", {4, 40, 70}, r)});
  add("matmul/bcast_b", "matmul", {fin("a", {2, 130, 72}, r), fin("b", {1, 72, 150}, r)});
  add("conv2d/3x3_p1", "conv2d",
      {fin("x", {2, 4, 17, 19}, r), fin("w", {8, 4, 3, 3}, r), fin("b", {8}, r), ival("params", {6}, {1, 1, 1, 1, 1, 1})});
  add("conv2d/s2_asym", "conv2d",
      {fin("x", {2, 5, 16, 15}, r), fin("w", {6, 5, 3, 3}, r), ival("params", {6}, {2, 2, 0, 1, 0, 1})});
  add("conv2d/1x1", "conv2d", {fin("x", {2, 12, 9, 7}, r), fin("w", {10, 12, 1, 1}, r), fin("b", {10}, r),
                               ival("params", {6}, {1, 1, 0, 0, 0, 0})});
  add("conv2d/big", "conv2d", {fin("x", {1, 64, 64, 64}, r), fin("w", {64, 64, 3, 3}, r, -0.05f, 0.05f),
                               fin("b", {64}, r), ival("params", {6}, {1, 1, 1, 1, 1, 1})});
  add("conv2d/patch16", "conv2d", {fin("x", {1, 3, 64, 48}, r), fin("w", {32, 3, 16, 16}, r, -0.1f, 0.1f),
                                   ival("params", {6}, {16, 16, 0, 0, 0, 0})});
  add("conv_transpose2d/k2", "conv_transpose2d",
      {fin("x", {2, 8, 5, 6}, r), fin("w", {8, 4, 2, 2}, r), fin("b", {4}, r), ival("stride", {1}, {2})});
  add("conv_transpose2d/k4", "conv_transpose2d",
      {fin("x", {1, 16, 7, 3}, r), fin("w", {16, 5, 4, 4}, r), ival("stride", {1}, {4})});
  // norms
  add("group_norm", "group_norm",
      {fin("x", {2, 64, 9, 11}, r, -2, 3), fin("gamma", {64}, r), fin("beta", {64}, r), fval("params", {3}, {32, 1e-5f, 0})});
  add("group_norm/silu", "group_norm",
      {fin("x", {2, 320, 32, 32}, r, -2, 3), fin("gamma", {320}, r), fin("beta", {320}, r), fval("params", {3}, {32, 1e-6f, 1})});
  add("group_norm/3d", "group_norm",
      {fin("x", {2, 64, 3, 5, 7}, r), fin("gamma", {64}, r), fin("beta", {64}, r), fval("params", {3}, {8, 1e-5f, 0})});
  add("layer_norm/clip", "layer_norm",
      {fin("x", {3, 77, 768}, r, -2, 3), fin("gamma", {768}, r), fin("beta", {768}, r), fval("eps", {1}, {1e-5f})});
  add("layer_norm/small", "layer_norm", {fin("x", {5, 40}, r), fin("gamma", {40}, r), fin("beta", {40}, r), fval("eps", {1}, {1e-6f})});
  // attention: [B, Lq, H*D]
  add("attention/cross_d40_bcast", "attention",
      {fin("q", {2, 100, 320}, r), fin("k", {1, 77, 320}, r), fin("v", {1, 77, 320}, r), ival("params", {2}, {8, 0})});
  add("attention/causal_d64", "attention",
      {fin("q", {1, 77, 768}, r), fin("k", {1, 77, 768}, r), fin("v", {1, 77, 768}, r), ival("params", {2}, {12, 1})});
  add("attention/self_d160", "attention",
      {fin("q", {2, 64, 320}, r), fin("k", {2, 300, 320}, r), fin("v", {2, 300, 320}, r), ival("params", {2}, {2, 0})});
  add("attention/d80", "attention",
      {fin("q", {1, 33, 400}, r), fin("k", {1, 33, 400}, r), fin("v", {1, 33, 400}, r), ival("params", {2}, {5, 0})});
  add("attention/self_4096_d40", "attention",
      {fin("q", {1, 4096, 320}, r), fin("k", {1, 4096, 320}, r), fin("v", {1, 4096, 320}, r), ival("params", {2}, {8, 0})});
  // streaming temporal attention
  {
    const int64_t R = 2, P = 37, C = 320, W = 16, L = 24;
    std::vector<int64_t> pe(size_t(R * W)), upd = {3, 15};
    for (auto& v : pe) v = int64_t(r.next() % L);
    std::vector<float> bias(size_t(R * W), 0.f);
    for (int64_t i = 0; i < R * W; ++i)
      if (r.next() % 3 == 0 && i % W != upd[size_t(i / W)]) bias[size_t(i)] = -INFINITY;
    Case* c = add("stream_temporal_attention", "stream_temporal_attention",
                  {fin("q", {R, P, C}, r), fin("k", {R, P, C}, r), fin("v", {R, P, C}, r), fin("cache", {R, 2, P, W, C}, r),
                   fin("qpe", {L, C}, r), fin("kpe", {L, C}, r), fin("vpe", {L, C}, r), ival("pe_idx", {R, W}, pe),
                   ival("update_idx", {R}, upd), fval("bias", {R, W}, bias), ival("heads", {1}, {8})});
    c->outputs = {"y", "cache_out"};
  }
  // resampling
  add("upsample_nearest/x2", "upsample_nearest", {fin("x", {2, 3, 7, 9}, r), ival("size", {2}, {14, 18})});
  add("upsample_nearest/frac", "upsample_nearest", {fin("x", {2, 3, 7, 9}, r), ival("size", {2}, {10, 13})});
  add("resize_bilinear/up", "resize_bilinear", {fin("x", {1, 3, 17, 23}, r), ival("size", {3}, {32, 40, 0})});
  add("resize_bilinear/up_ac", "resize_bilinear", {fin("x", {1, 3, 17, 23}, r), ival("size", {3}, {32, 40, 1})});
  add("resize_bilinear/down", "resize_bilinear", {fin("x", {2, 2, 17, 23}, r), ival("size", {3}, {5, 7, 0})});
  add("max_pool2d/k3s2p1", "max_pool2d", {fin("x", {2, 3, 17, 19}, r), ival("params", {6}, {3, 2, 1, 1, 1, 1})});
  add("max_pool2d/k2s2", "max_pool2d", {fin("x", {2, 3, 16, 18}, r), ival("params", {6}, {2, 2, 0, 0, 0, 0})});
  // lookup / reduce
  {
    std::vector<int64_t> ids(2 * 77);
    for (auto& v : ids) v = int64_t(r.next() % 1000);
    add("embedding", "embedding", {ival("ids", {2, 77}, ids), fin("table", {1000, 64}, r)});
    ids[5] = 1000;
    Case* c = add("embedding/out_of_range", "embedding", {ival("ids", {2, 77}, ids), fin("table", {1000, 64}, r)});
    c->expect_status = L2D_ERR_INVALID_ARGUMENT;
    ids[5] = 7;
    add("embedding/after_error", "embedding", {ival("ids", {2, 77}, ids), fin("table", {1000, 64}, r)});
  }
  add("minmax_normalize", "minmax_normalize", {fin("x", {2, 1, 37, 41}, r, -3, 5)});
  add("minmax_normalize/big", "minmax_normalize", {fin("x", {1, 1, 384, 384}, r, -3, 5)});
  return cs;
}

bool open_backend(Backend& b, const char* kind, const char* options) {
  if (l2d_context_create(kind, options, &b.ctx) != L2D_OK) {
    std::printf("cannot create %s context: %s\n", b.name, l2d_last_error());
    return false;
  }
  l2d_tmap* weights = nullptr;
  l2d_tmap_create(&weights);
  const l2d_status st = l2d_model_create(b.ctx, "ops", "{}", weights, &b.model);
  l2d_tmap_free(weights);
  if (st != L2D_OK) {
    std::printf("cannot create the ops model on %s: %s\n", b.name, l2d_last_error());
    return false;
  }
  return true;
}

}  // namespace

// Usage: test_cuda_ops [label-substring]. L2D_TEST_SELF=1 runs the "device" side on a second CPU
// backend instead (checks the harness and the cases themselves on a machine without a GPU).
int main(int argc, char** argv) {
  const bool self = std::getenv("L2D_TEST_SELF") != nullptr;
  int32_t available = 0;
  if (!self && (l2d_backend_available("cuda", &available) != L2D_OK || !available)) {
    std::printf("no GPU\n");
    return 0;
  }
  const char* filter = argc > 1 ? argv[1] : nullptr;
  Backend cpu{"cpu"};
  std::vector<Backend> devs{{"cuda-fp32"}, {"cuda-fp16"}};
  const char* kind = self ? "cpu" : "cuda";
  if (!open_backend(cpu, "cpu", nullptr) || !open_backend(devs[0], kind, "{\"precision\":\"fp32\"}") ||
      !open_backend(devs[1], kind, "{\"precision\":\"fp16\"}"))
    return 1;
  for (const Case& c : make_cases()) {
    if (filter && c.label.find(filter) == std::string::npos) continue;
    run_case(c, cpu, devs);
  }
  for (Backend* b : {&cpu, &devs[0], &devs[1]}) {
    l2d_model_free(b->model);
    l2d_context_free(b->ctx);
  }
  if (failures) std::printf("test_cuda_ops: %d FAILED\n", failures);
  else std::printf("test_cuda_ops: all ok\n");
  return failures ? 1 : 0;
}
