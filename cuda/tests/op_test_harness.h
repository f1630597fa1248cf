// op_test_harness.h: the shared harness of the CUDA op tests (test_cuda_ops, test_cuda_dense,
// test_cuda_attention): a case table run through the public C ABI and the "ops" model on the CPU
// oracle and on CUDA (fp32 and fp16 storage), gated on max-abs AND relative L2, timed, filterable.
// Header-only, host code only (no CUDA headers): any test binary linking liblive2diff can use it.
//
//   int main(int argc, char** argv) {
//     l2d_test::Harness h("test_cuda_dense", argc, argv);   // --list, --filter S, positional S
//     std::vector<l2d_test::Case> cases = ...;              // data: labels, inputs made lazily
//     return h.run(cases);                                  // 0 ok, 1 failed, 77 no GPU / no init
//   }
//
// Inputs are made only for the cases that pass the filter (real network shapes are tens of MB),
// from a seed derived from the label, so a filtered run sees the same data as a full one.
// Exit codes: 0 all ok, 1 a case failed, 2 bad usage, 77 (kExitNoGpu) CUDA could not start:
// never 0 without a GPU. L2D_TEST_SELF=1 runs the "device" side on a second CPU backend (checks the
// harness and the case table on a machine without a GPU).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "l2d.h"

namespace l2d_test {

constexpr int kExitNoGpu = 77;  // the automake "skipped" code; gpu-check.sh reports it as FAILED (no GPU)

// Small deterministic generator (the data only has to be reproducible, not statistically perfect).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() & 0xFFFFFF) / float(0x1000000); }
};

inline uint64_t hash_label(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

inline int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// One input of a case: float data, int64 data or uint8 data (frames).
struct Input {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  std::vector<uint8_t> u8;
  int dtype = L2D_F32;  // L2D_F32, L2D_I64 or L2D_U8
};

// Uniform random floats in [lo, hi).
inline Input fin(const std::string& name, std::vector<int64_t> shape, Rng& rng, float lo = -1.f, float hi = 1.f) {
  Input in{name, shape};
  in.f.resize(size_t(numel(shape)));
  for (float& v : in.f) v = rng.uniform(lo, hi);
  return in;
}
// Random multiples of 2^-grid_log2 in [-amp, amp]: exactly representable in fp16 when
// amp / 2^-grid_log2 <= 2048, and sums of products of such values are exact in fp32 while
// K * amp_a * amp_b < 2^24 * 2^-(grid_a + grid_b). So a GEMM/conv on them has ONE exact answer
// (the CPU oracle computes it), and the fp16 path may differ from it only by rounding its output.
inline Input fgrid(const std::string& name, std::vector<int64_t> shape, Rng& rng, int grid_log2, float amp) {
  Input in{name, shape};
  in.f.resize(size_t(numel(shape)));
  const float q = std::ldexp(1.f, -grid_log2);
  const int steps = int(amp / q);
  for (float& v : in.f) v = float(int(rng.next() % uint32_t(2 * steps + 1)) - steps) * q;
  return in;
}
inline Input fval(const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
  Input in{name, shape};
  in.f = std::move(v);
  return in;
}
inline Input ival(const std::string& name, std::vector<int64_t> shape, std::vector<int64_t> v) {
  Input in{name, shape};
  in.i = std::move(v);
  in.dtype = L2D_I64;
  return in;
}
inline Input u8val(const std::string& name, std::vector<int64_t> shape, Rng& rng) {
  Input in{name, shape};
  in.u8.resize(size_t(numel(shape)));
  for (uint8_t& v : in.u8) v = uint8_t(rng.next() & 0xFF);
  in.dtype = L2D_U8;
  return in;
}

// Bounds of one precision. A case passes when rel_l2 <= rel_l2 AND max_abs <= abs + abs_scale *
// max|ref| AND (half_ulps > 0: every element within half_ulps fp16 ulps of the reference, the tight
// check of exactly-representable inputs) AND NaN/Inf appear in the same places.
struct Bound {
  double rel_l2;
  double abs = 0;        // absolute part of the max-abs bound
  double abs_scale = 0;  // part of the max-abs bound proportional to max|ref|
  double half_ulps = 0;  // > 0: per-element gate |err| <= half_ulps * ulp_fp16(ref) (0.5 = correctly rounded)
  bool exact = false;    // bit-exact (max_abs must be 0): Philox, integer outputs, layout ops
};

// Defaults: fp32 storage (the verification mode) and fp16 storage with fp32 accumulation.
inline Bound fp32_default() { return {2e-5, 1e-6, 2e-4}; }
inline Bound fp16_default() { return {1e-2, 1e-3, 2e-2}; }

struct Case {
  std::string label, method;
  // Makes the inputs (called only when the case runs; rng is seeded from the label).
  std::function<std::vector<Input>(Rng&)> make;
  std::vector<std::string> outputs{"y"};
  int expect_status = L2D_OK;
  Bound fp32 = fp32_default();
  Bound fp16 = fp16_default();
  // What it stands for in the networks (printed by --list; checked by the CPU-side coverage test).
  std::string note;
  // Shape summary for --list (e.g. "M=8192 N=2560 K=320"); filled by the case table.
  std::string shape;
  // A real-network shape (tens of MB): skipped by --small (the compute-sanitizer runs).
  bool big = false;
};

// Errors of one output against the reference.
struct Metrics {
  double max_abs = 0, rel_l2 = 0, max_ref = 0;
  double worst_ulps = 0;  // largest |err| / ulp_fp16(ref) (for the half_ulps gate)
  bool nonfinite_mismatch = false;
};

// One fp16 ulp at |v| (2^-24 for subnormals): the spacing of fp16 values around v.
inline double half_ulp(double v) {
  const double a = std::fabs(v);
  if (a < std::ldexp(1.0, -14)) return std::ldexp(1.0, -24);
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - 1 - 10);
}

inline Metrics compare(const float* ref, const float* got, size_t n) {
  Metrics m;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool ref_finite = std::isfinite(ref[i]), got_finite = std::isfinite(got[i]);
    if (ref_finite != got_finite || (!ref_finite && !(std::isnan(ref[i]) && std::isnan(got[i])) && ref[i] != got[i])) {
      m.nonfinite_mismatch = true;
      continue;
    }
    if (!ref_finite) continue;
    const double e = double(got[i]) - double(ref[i]);
    m.max_abs = std::fmax(m.max_abs, std::fabs(e));
    m.max_ref = std::fmax(m.max_ref, std::fabs(double(ref[i])));
    m.worst_ulps = std::fmax(m.worst_ulps, std::fabs(e) / half_ulp(ref[i]));
    num += e * e;
    den += double(ref[i]) * double(ref[i]);
  }
  m.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return m;
}

// Empty string when m is within b, else why not.
inline std::string judge(const Metrics& m, const Bound& b) {
  char buf[160];
  if (m.nonfinite_mismatch) return "NaN/Inf where the reference has none (or vice versa)";
  if (b.exact) {
    if (m.max_abs != 0) return "not bit-exact";
    return "";
  }
  if (m.rel_l2 > b.rel_l2) {
    std::snprintf(buf, sizeof buf, "rel_l2 > %.1e", b.rel_l2);
    return buf;
  }
  const double abs_bound = b.abs + b.abs_scale * m.max_ref;
  if (m.max_abs > abs_bound) {
    std::snprintf(buf, sizeof buf, "max_abs > %.2e", abs_bound);
    return buf;
  }
  if (b.half_ulps > 0 && m.worst_ulps > b.half_ulps) {
    std::snprintf(buf, sizeof buf, "%.2f fp16 ulps > %.2f", m.worst_ulps, b.half_ulps);
    return buf;
  }
  return "";
}

// A backend under test: a context and an "ops" model on it.
struct Device {
  std::string name;
  bool fp16 = false;
  l2d_context* ctx = nullptr;
  l2d_model* model = nullptr;
};

inline l2d_tmap* make_tmap(const std::vector<Input>& inputs) {
  l2d_tmap* m = nullptr;
  l2d_tmap_create(&m);
  for (const Input& in : inputs) {
    const int32_t nd = int32_t(in.shape.size());
    if (in.dtype == L2D_I64) l2d_tmap_set(m, in.name.c_str(), L2D_I64, nd, in.shape.data(), in.i.data(), in.i.size() * 8);
    else if (in.dtype == L2D_U8) l2d_tmap_set(m, in.name.c_str(), L2D_U8, nd, in.shape.data(), in.u8.data(), in.u8.size());
    else l2d_tmap_set(m, in.name.c_str(), L2D_F32, nd, in.shape.data(), in.f.data(), in.f.size() * 4);
  }
  return m;
}

// Reads an output as floats (F32 as is; I32/I64/U8 converted, so integer outputs compare exactly).
inline bool read_output(l2d_tmap* m, const std::string& name, std::vector<float>& out, std::vector<int64_t>& shape) {
  int32_t dtype = 0, ndim = 0;
  int64_t s[L2D_MAX_DIMS];
  if (l2d_tmap_info(m, name.c_str(), &dtype, &ndim, s) != L2D_OK) return false;
  shape.assign(s, s + ndim);
  const size_t n = size_t(numel(shape));
  out.resize(n);
  if (dtype == L2D_F32) return l2d_tmap_get(m, name.c_str(), out.data(), n * 4) == L2D_OK;
  if (dtype == L2D_U8) {
    std::vector<uint8_t> v(n);
    if (l2d_tmap_get(m, name.c_str(), v.data(), n) != L2D_OK) return false;
    for (size_t i = 0; i < n; ++i) out[i] = float(v[i]);
    return true;
  }
  if (dtype == L2D_I32) {
    std::vector<int32_t> v(n);
    if (l2d_tmap_get(m, name.c_str(), v.data(), n * 4) != L2D_OK) return false;
    for (size_t i = 0; i < n; ++i) out[i] = float(v[i]);
    return true;
  }
  if (dtype == L2D_I64) {
    std::vector<int64_t> v(n);
    if (l2d_tmap_get(m, name.c_str(), v.data(), n * 8) != L2D_OK) return false;
    for (size_t i = 0; i < n; ++i) out[i] = float(v[i]);
    return true;
  }
  return false;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class Harness {
 public:
  // Parses: --list (print the case table and exit 0, no backend needed), --filter S (or a bare S:
  // run the cases whose label contains S; several filters = any of them), --small (skip the
  // real-network shapes), --help.
  Harness(const char* test_name, int argc, char** argv) : test_name_(test_name) {
    for (int a = 1; a < argc; ++a) {
      const std::string arg = argv[a];
      if (arg == "--list") list_ = true;
      else if (arg == "--small") small_ = true;
      else if (arg == "--filter" && a + 1 < argc) filters_.push_back(argv[++a]);
      else if (arg.rfind("--filter=", 0) == 0) filters_.push_back(arg.substr(9));
      else if (arg == "--help" || arg == "-h") usage_ = 1;
      else if (arg.rfind("--", 0) == 0) usage_ = 2;
      else filters_.push_back(arg);
    }
    self_ = std::getenv("L2D_TEST_SELF") != nullptr;
    // Line-buffered even into a log file: a run killed by its timeout still shows how far it got.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
  }

  bool selected(const Case& c) const {
    if (small_ && c.big) return false;
    if (filters_.empty()) return true;
    for (const std::string& f : filters_)
      if (c.label.find(f) != std::string::npos) return true;
    return false;
  }

  // Runs the selected cases; returns the process exit code.
  int run(const std::vector<Case>& cases) {
    if (usage_) {
      std::printf("usage: %s [--list] [--small] [--filter SUBSTRING]... [SUBSTRING]...\n", test_name_);
      return usage_ == 1 ? 0 : 2;
    }
    if (list_) {
      for (const Case& c : cases)
        if (selected(c))
          std::printf("%-44s %-26s %-5s %-44s %s\n", c.label.c_str(), c.method.c_str(), c.big ? "big" : "small",
                      c.shape.c_str(), c.note.c_str());
      return 0;
    }
    const auto t_all = std::chrono::steady_clock::now();
    if (!open_all()) return kExitNoGpu;
    int ran = 0;
    for (const Case& c : cases) {
      if (!selected(c)) continue;
      ++ran;
      run_case(c);
    }
    close_all();
    if (ran == 0) {
      std::printf("%s: no case matches the filter   FAIL\n", test_name_);
      return 1;
    }
    std::printf("%s: %d cases in %.1f s: %s\n", test_name_, ran, seconds_since(t_all),
                failures_ ? (std::to_string(failures_) + " FAILED").c_str() : "all ok");
    return failures_ ? 1 : 0;
  }

  int failures() const { return failures_; }

 private:
  bool open(Device& d, const char* kind, const char* options) {
    if (l2d_context_create(kind, options, &d.ctx) != L2D_OK) {
      std::printf("%s: cannot create the %s context (%s): %s   FAIL\n", test_name_, d.name.c_str(), kind, l2d_last_error());
      return false;
    }
    l2d_tmap* weights = nullptr;
    l2d_tmap_create(&weights);
    const l2d_status st = l2d_model_create(d.ctx, "ops", "{}", weights, &d.model);
    l2d_tmap_free(weights);
    if (st != L2D_OK) {
      std::printf("%s: cannot create the ops model on %s: %s   FAIL\n", test_name_, d.name.c_str(), l2d_last_error());
      return false;
    }
    return true;
  }

  // CPU oracle + CUDA fp32 + CUDA fp16. A CUDA that cannot start is reported with the library's
  // reason (driver/runtime versions) and the no-GPU exit code.
  bool open_all() {
    const char* kind = self_ ? "cpu" : "cuda";
    if (!self_) {
      int32_t available = 0;
      if (l2d_backend_available("cuda", &available) != L2D_OK || !available) {
        l2d_context* probe = nullptr;
        const char* why = "l2d_backend_available(\"cuda\") is 0";
        if (l2d_context_create("cuda", nullptr, &probe) != L2D_OK) why = l2d_last_error();
        else l2d_context_free(probe);
        std::printf("%s: no GPU: %s   FAIL\n", test_name_, why);
        return false;
      }
    }
    ref_.name = "cpu";
    devs_ = {Device{"cuda-fp32", false}, Device{"cuda-fp16", true}};
    if (!open(ref_, "cpu", nullptr)) return false;
    return open(devs_[0], kind, "{\"precision\":\"fp32\"}") && open(devs_[1], kind, "{\"precision\":\"fp16\"}");
  }

  void close_all() {
    for (Device* d : {&ref_, &devs_[0], &devs_[1]}) {
      if (d->model) l2d_model_free(d->model);
      if (d->ctx) l2d_context_free(d->ctx);
      d->model = nullptr;
      d->ctx = nullptr;
    }
  }

  void run_case(const Case& c) {
    Rng rng(hash_label(c.label));
    const std::vector<Input> inputs = c.make(rng);
    l2d_tmap* io_ref = make_tmap(inputs);
    auto t0 = std::chrono::steady_clock::now();
    const l2d_status st_ref = l2d_model_run(ref_.model, c.method.c_str(), io_ref);
    const double ms_ref = 1e3 * seconds_since(t0);
    for (Device& d : devs_) {
      l2d_tmap* io = make_tmap(inputs);
      t0 = std::chrono::steady_clock::now();
      const l2d_status st = l2d_model_run(d.model, c.method.c_str(), io);
      const double ms = 1e3 * seconds_since(t0);
      if (c.expect_status != L2D_OK) {
        const bool ok = st == c.expect_status && st_ref == c.expect_status;
        std::printf("%-40s %-10s status cpu=%d dev=%d (want %d)%s\n", c.label.c_str(), d.name.c_str(), int(st_ref),
                    int(st), c.expect_status, ok ? "" : "   FAIL");
        if (!ok) {
          ++failures_;
          std::printf("    dev error: %s\n", l2d_model_last_error(d.model));
        }
      } else if (st_ref != L2D_OK || st != L2D_OK) {
        std::printf("%-40s %-10s run failed: cpu=%d dev=%d: %s | %s   FAIL\n", c.label.c_str(), d.name.c_str(),
                    int(st_ref), int(st), st_ref ? l2d_model_last_error(ref_.model) : "",
                    st ? l2d_model_last_error(d.model) : "");
        ++failures_;
      } else {
        for (const std::string& out : c.outputs) check_output(c, d, io_ref, io, out, ms, ms_ref);
      }
      l2d_tmap_free(io);
    }
    l2d_tmap_free(io_ref);
  }

  void check_output(const Case& c, const Device& d, l2d_tmap* io_ref, l2d_tmap* io, const std::string& out, double ms,
                    double ms_ref) {
    std::vector<float> a, b;
    std::vector<int64_t> sa, sb;
    if (!read_output(io_ref, out, a, sa) || !read_output(io, out, b, sb) || sa != sb) {
      std::printf("%-40s %-10s output %s missing or shape mismatch   FAIL\n", c.label.c_str(), d.name.c_str(), out.c_str());
      ++failures_;
      return;
    }
    const Metrics m = compare(a.data(), b.data(), a.size());
    const std::string why = judge(m, d.fp16 ? c.fp16 : c.fp32);
    std::printf("%-40s %-10s %-9s max_abs %.3e  rel_l2 %.3e  ulps %6.2f  %8.2f ms (cpu %.1f ms)%s%s\n", c.label.c_str(),
                d.name.c_str(), out.c_str(), m.max_abs, m.rel_l2, m.worst_ulps, ms, ms_ref, why.empty() ? "" : "   FAIL: ",
                why.c_str());
    if (!why.empty()) ++failures_;
  }

  const char* test_name_;
  bool list_ = false, self_ = false, small_ = false;
  int usage_ = 0;
  std::vector<std::string> filters_;
  Device ref_;
  std::vector<Device> devs_;
  int failures_ = 0;
};

}  // namespace l2d_test
