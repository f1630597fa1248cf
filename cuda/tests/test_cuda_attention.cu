// test_cuda_attention: the CUDA attention kernels against the CPU oracle at the shapes the models
// really run (SD1.5 UNet at 512x512, CLIP text, MiDaS ViT), through the public C ABI and the "ops"
// model. Devices: cuda-fp32 and cuda-fp16, each with L2D_ATTENTION=simple (the simple kernels)
// and L2D_ATTENTION=tc (tensor-core fused attention in fp16, vectorised temporal attention). Prints max-abs and relative-L2 error per case and
// device; exits 1 on any failure. Also runs the streaming temporal attention over a KV ring
// (one call, and an 8-frame warm-up chain with Live2Diff's bookkeeping) and prints the bytes it
// moves against the cache size. The packed ops of the one QKV projection (self_attention on
// qkv [B, L, 3C], stream_temporal_attention_qkv) run at the same real shapes, on the four devices
// and on a fifth with L2D_FUSE=none (the default: slices + the unpacked op). Without a GPU it
// prints "no GPU" and exits 77; L2D_TEST_SELF=1 runs
// the "device" side on CPU contexts (checks the cases and the harness on a machine without GPU).
// Host code only. Usage: test_cuda_attention [label-substring].
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
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

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct Input {
  std::string name;
  Shape shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  bool is_int = false;
};

Input rand_in(const std::string& name, Shape shape, Rng& rng, float lo, float hi) {
  Input in{name, shape, {}, {}, false};
  in.f.resize(size_t(numel(shape)));
  for (float& v : in.f) v = rng.uniform(lo, hi);
  return in;
}
Input f_in(const std::string& name, Shape shape, std::vector<float> v) { return {name, shape, std::move(v), {}, false}; }
Input i_in(const std::string& name, Shape shape, std::vector<int64_t> v) { return {name, shape, {}, std::move(v), true}; }

l2d_tmap* make_map(const std::vector<Input>& inputs) {
  l2d_tmap* m = nullptr;
  l2d_tmap_create(&m);
  for (const Input& in : inputs) {
    if (in.is_int)
      l2d_tmap_set(m, in.name.c_str(), L2D_I64, int32_t(in.shape.size()), in.shape.data(), in.i.data(), in.i.size() * 8);
    else
      l2d_tmap_set(m, in.name.c_str(), L2D_F32, int32_t(in.shape.size()), in.shape.data(), in.f.data(), in.f.size() * 4);
  }
  return m;
}

bool read_f32(l2d_tmap* m, const char* name, std::vector<float>& out) {
  int32_t dtype = 0, ndim = 0;
  int64_t s[L2D_MAX_DIMS];
  if (l2d_tmap_info(m, name, &dtype, &ndim, s) != L2D_OK || dtype != L2D_F32) return false;
  out.resize(size_t(numel(Shape(s, s + ndim))));
  return l2d_tmap_get(m, name, out.data(), out.size() * 4) == L2D_OK;
}

struct Ctx {
  const char* name;
  const char* attention;  // L2D_ATTENTION at context creation
  bool fp16;
  const char* fuse = nullptr;  // L2D_FUSE at context creation (null: unset, every fusion on)
  l2d_context* ctx = nullptr;
  l2d_model* model = nullptr;
};

int failures = 0;

// Runs `method` on ctx; returns false (and counts a failure) when it does not succeed.
bool run(Ctx& c, const char* label, const char* method, const std::vector<Input>& inputs,
         const std::vector<const char*>& outs, std::vector<std::vector<float>>& results) {
  l2d_tmap* io = make_map(inputs);
  const l2d_status st = l2d_model_run(c.model, method, io);
  bool ok = st == L2D_OK;
  if (!ok) std::printf("%-40s %-17s run failed (%d): %s   FAIL\n", label, c.name, int(st), l2d_model_last_error(c.model));
  results.assign(outs.size(), {});
  for (size_t i = 0; ok && i < outs.size(); ++i) {
    ok = read_f32(io, outs[i], results[i]);
    if (!ok) std::printf("%-40s %-17s output %s missing   FAIL\n", label, c.name, outs[i]);
  }
  l2d_tmap_free(io);
  if (!ok) ++failures;
  return ok;
}

// Max-abs and relative-L2 error of got vs want (the oracle); -inf/NaN must match exactly.
void compare(const char* label, const Ctx& c, const char* what, const std::vector<float>& want,
             const std::vector<float>& got) {
  if (want.size() != got.size()) {
    std::printf("%-40s %-17s %-9s size %zu vs %zu   FAIL\n", label, c.name, what, got.size(), want.size());
    ++failures;
    return;
  }
  double max_abs = 0, num = 0, den = 0;
  bool nonfinite_mismatch = false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(want[i]) || !std::isfinite(got[i])) {
      nonfinite_mismatch |= !(std::isnan(want[i]) && std::isnan(got[i])) && want[i] != got[i];
      continue;
    }
    const double e = double(got[i]) - double(want[i]);
    max_abs = std::fmax(max_abs, std::fabs(e));
    num += e * e;
    den += double(want[i]) * double(want[i]);
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol = c.fp16 ? 1e-2 : 2e-5;  // the tolerances of test_cuda_ops
  const bool ok = !nonfinite_mismatch && rel <= tol;
  std::printf("%-40s %-17s %-9s max_abs %.3e  rel_l2 %.3e%s\n", label, c.name, what, max_abs, rel,
              ok ? "" : (nonfinite_mismatch ? "   FAIL (non-finite)" : "   FAIL"));
  if (!ok) ++failures;
}

// ---- fused attention: q [B, Lq, H*D], k/v [Bk, Lk, H*D] ----

struct AttnCase {
  std::string label;
  int64_t B, Lq, Lk, Bk, heads, D;
  bool causal;
  float q_range;  // |q| <= q_range: larger values make the softmax peakier
};

std::vector<AttnCase> attention_cases() {
  return {
      // SD1.5 UNet at 512x512 (latent 64x64), batch of 2 denoising rows; heads 8.
      {"self/unet_l1_4096_d40", 2, 4096, 4096, 2, 8, 40, false, 3.f},
      {"self/unet_l2_1024_d80", 2, 1024, 1024, 2, 8, 80, false, 3.f},
      {"self/unet_l3_256_d160", 2, 256, 256, 2, 8, 160, false, 3.f},
      {"self/unet_mid_64_d160", 2, 64, 64, 2, 8, 160, false, 3.f},
      {"self/unet_768x512_6144_d40", 1, 6144, 6144, 1, 8, 40, false, 1.f},
      // Cross-attention to the 77 CLIP tokens of one prompt (k/v batch 1, broadcast).
      {"cross/unet_l1_4096x77_d40", 2, 4096, 77, 1, 8, 40, false, 3.f},
      {"cross/unet_l2_1024x77_d80", 2, 1024, 77, 1, 8, 80, false, 3.f},
      {"cross/unet_l3_256x77_d160", 2, 256, 77, 1, 8, 160, false, 3.f},
      // CLIP text encoder (causal) and MiDaS ViT (576 patches + class token).
      {"causal/clip_77_d64", 1, 77, 77, 1, 12, 64, true, 3.f},
      {"self/midas_vit_577_d64", 1, 577, 577, 1, 12, 64, false, 3.f},
      {"self/midas_vitl_577_d64", 1, 577, 577, 1, 16, 64, false, 3.f},
      // Edges: ragged tiles, causal with Lq != multiple of 64, a head dim the tc kernel pads
      // from 56 to 64, and one it cannot take (D % 8 != 0: falls back to the simple kernel).
      {"edge/ragged_100x33_d40", 3, 100, 33, 3, 2, 40, false, 3.f},
      {"edge/causal_130_d80", 1, 130, 130, 1, 2, 80, true, 3.f},
      {"edge/d56", 1, 200, 150, 1, 3, 56, false, 3.f},
      {"edge/d20_fallback", 1, 70, 90, 1, 4, 20, false, 3.f},
      {"edge/d120_padded_160", 1, 90, 70, 1, 2, 120, false, 3.f},
  };
}

void run_attention(const AttnCase& a, Ctx& cpu, std::vector<Ctx>& devs, Rng& rng) {
  const int64_t HD = a.heads * a.D;
  const std::vector<Input> in = {rand_in("q", {a.B, a.Lq, HD}, rng, -a.q_range, a.q_range),
                                 rand_in("k", {a.Bk, a.Lk, HD}, rng, -1.f, 1.f),
                                 rand_in("v", {a.Bk, a.Lk, HD}, rng, -1.f, 1.f),
                                 i_in("params", {2}, {a.heads, a.causal ? 1 : 0})};
  const std::string label = "attention/" + a.label;
  std::vector<std::vector<float>> want, got;
  if (!run(cpu, label.c_str(), "attention", in, {"y"}, want)) return;
  for (Ctx& d : devs)
    if (run(d, label.c_str(), "attention", in, {"y"}, got)) compare(label.c_str(), d, "y", want[0], got[0]);
}

// ---- streaming temporal attention over the KV ring ----

// Live2Diff's KV bookkeeping (kv_cache.h), written out again here as an independent check.
struct Bookkeeping {
  int R, W, S;
  std::vector<float> bias;
  std::vector<int64_t> pe, upd;
  Bookkeeping(int rows, int window, int sink) : R(rows), W(window), S(sink) {
    const float inf = std::numeric_limits<float>::infinity();
    bias.assign(size_t(R * W), -inf);
    pe.assign(size_t(R * W), 0);
    upd.assign(size_t(R), S);
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < W; ++s) {
        pe[size_t(r * W + s)] = s;
        if (s < S) bias[size_t(r * W + s)] = 0.f;
      }
    bias[size_t(S)] = 0.f;
    if (R > 1) upd[1] = S + 1;
  }
  void advance() {
    for (int r = 0; r < R; ++r) {
      float* b = bias.data() + r * W;
      int64_t* p = pe.data() + r * W;
      int zeros = 0;
      bool any_inf = false;
      for (int s = 0; s < W; ++s) {
        zeros += b[s] == 0.f;
        any_inf |= std::isinf(b[s]);
      }
      if (any_inf) {
        upd[size_t(r)] = zeros;
      } else {
        const int64_t last = p[W - 1];
        for (int s = W - 1; s > S; --s) p[s] = p[s - 1];  // roll(+1) of pe[S:]
        p[S] = last;
        int arg = 0;
        for (int s = 1; s < W; ++s)
          if (p[s] > p[arg]) arg = s;
        upd[size_t(r)] = arg;
      }
      for (int s = 0; s < std::min(zeros + 1, W); ++s) b[s] = 0.f;
    }
  }
};

// Bytes one call moves in the in-place kernel, at `bytes_per` bytes per stored value: every slot
// but the one being written is read once (K and V), the new slot written once, q/k/v read and y
// written once; the PE tables (max_len x C, three of them) and the bookkeeping are L2-resident and
// counted once. The floor is one read of the cache (2 R P W C values).
struct TemporalBytes {
  double moved, cache;
};
TemporalBytes temporal_bytes(int64_t R, int64_t P, int64_t C, int64_t W, int64_t max_len, int bytes_per) {
  const double b = bytes_per;
  const double cache = 2.0 * R * P * W * C * b;
  const double slots_read = 2.0 * R * P * (W - 1) * C * b;
  const double slot_written = 2.0 * R * P * C * b;
  const double io = 4.0 * R * P * C * b;  // q, k, v in; y out
  const double tables = 3.0 * max_len * C * b;
  return {slots_read + slot_written + io + tables, cache};
}

struct TemporalCase {
  std::string label;
  int64_t R, P, heads, D;
  bool warmup;  // an 8-frame warm-up chain instead of one call in the rolling state
};

// One call per case at the real sizes (the host side of this test copies each cache several
// times, so the 8-frame warm-up chains run at 64 pixels: the bookkeeping does not depend on P).
std::vector<TemporalCase> temporal_cases() {
  return {
      // 4096 pixels (512x512, level 1) at every head dim.
      {"l1_4096_c320_d40_r2", 2, 4096, 8, 40, false},
      {"4096_c80_d80_r2", 2, 4096, 1, 80, false},
      {"4096_c160_d160_r2", 2, 4096, 1, 160, false},
      // The other UNet levels at 512x512 (real channels), 2 and 3 denoising rows.
      {"l2_1024_c640_d80_r2", 2, 1024, 8, 80, false},
      {"l3_256_c1280_d160_r3", 3, 256, 8, 160, false},
      {"warmup_64_c320_d40_r3", 3, 64, 8, 40, true},
      {"warmup_64_c640_d80_r2", 2, 64, 8, 80, true},
      {"warmup_64_c1280_d160_r2", 2, 64, 8, 160, true},
  };
}

constexpr int kWindow = 16, kSink = 8, kMaxLen = 24;

std::vector<Input> temporal_inputs(const TemporalCase& t, const Bookkeeping& bk, const std::vector<float>& cache,
                                   Rng& rng) {
  const int64_t C = t.heads * t.D;
  return {rand_in("q", {t.R, t.P, C}, rng, -2.f, 2.f),
          rand_in("k", {t.R, t.P, C}, rng, -1.f, 1.f),
          rand_in("v", {t.R, t.P, C}, rng, -1.f, 1.f),
          f_in("cache", {t.R, 2, t.P, kWindow, C}, cache),
          rand_in("qpe", {kMaxLen, C}, rng, -0.5f, 0.5f),
          rand_in("kpe", {kMaxLen, C}, rng, -0.5f, 0.5f),
          rand_in("vpe", {kMaxLen, C}, rng, -0.5f, 0.5f),
          i_in("pe_idx", {t.R, kWindow}, bk.pe),
          i_in("update_idx", {t.R}, bk.upd),
          f_in("bias", {t.R, kWindow}, bk.bias),
          i_in("heads", {1}, {t.heads})};
}

// Either one call on a full cache in the rolling state (every slot valid, PE indices rolled), or
// an 8-frame warm-up chain from a cache holding only the sink frames, where each backend feeds its
// own cache_out into its next call, as the stream does.
void run_temporal(const TemporalCase& t, Ctx& cpu, std::vector<Ctx>& devs, Rng& rng) {
  const int64_t C = t.heads * t.D;
  const TemporalBytes fp16 = temporal_bytes(t.R, t.P, C, kWindow, kMaxLen, 2);
  std::printf("temporal/%-31s bytes/call (fp16) %.1f MB vs cache %.1f MB (x%.3f)\n", t.label.c_str(), fp16.moved / 1e6,
              fp16.cache / 1e6, fp16.moved / fp16.cache);
  if (!t.warmup) {
    Bookkeeping bk(int(t.R), kWindow, kSink);
    for (int f = 0; f < 12; ++f) bk.advance();  // past the warm-up: all slots valid, PEs rolling
    std::vector<float> cache(size_t(numel({t.R, 2, t.P, kWindow, C})));
    for (float& v : cache) v = rng.uniform(-1.f, 1.f);
    const std::vector<Input> in = temporal_inputs(t, bk, cache, rng);
    const std::string label = "temporal/" + t.label;
    std::vector<std::vector<float>> want, got;
    if (run(cpu, label.c_str(), "stream_temporal_attention", in, {"y", "cache_out"}, want)) {
      for (Ctx& d : devs) {
        if (!run(d, label.c_str(), "stream_temporal_attention", in, {"y", "cache_out"}, got)) continue;
        compare(label.c_str(), d, "y", want[0], got[0]);
        compare(label.c_str(), d, "cache_out", want[1], got[1]);
      }
    }
    return;
  }
  // Warm-up: sink slots hold frames, the rest zeros; 8 streamed frames fill the window.
  Bookkeeping bk(int(t.R), kWindow, kSink);
  std::vector<float> cache0(size_t(numel({t.R, 2, t.P, kWindow, C})), 0.f);
  for (int64_t r = 0; r < t.R; ++r)
    for (int64_t kv = 0; kv < 2; ++kv)
      for (int64_t p = 0; p < t.P; ++p)
        for (int64_t s = 0; s < kSink; ++s)
          for (int64_t c = 0; c < C; ++c) cache0[size_t((((r * 2 + kv) * t.P + p) * kWindow + s) * C + c)] = rng.uniform(-1, 1);
  std::vector<float> cpu_cache = cache0;
  std::vector<std::vector<float>> dev_cache(devs.size(), cache0);
  for (int frame = 0; frame < 8; ++frame) {
    const std::vector<Input> in = temporal_inputs(t, bk, cpu_cache, rng);
    const std::string label = "temporal/" + t.label + "/warmup" + std::to_string(frame);
    std::vector<std::vector<float>> want, got;
    if (!run(cpu, label.c_str(), "stream_temporal_attention", in, {"y", "cache_out"}, want)) return;
    for (size_t i = 0; i < devs.size(); ++i) {
      std::vector<Input> din = in;
      din[3].f = dev_cache[i];
      if (!run(devs[i], label.c_str(), "stream_temporal_attention", din, {"y", "cache_out"}, got)) continue;
      compare(label.c_str(), devs[i], "y", want[0], got[0]);
      if (frame == 7) compare(label.c_str(), devs[i], "cache_out", want[1], got[1]);
      dev_cache[i] = got[1];
    }
    cpu_cache = want[1];
    bk.advance();
  }
}

// ---- the packed ops: q, k, v as the column blocks of one projection [.., 3C] ----

struct PackedCase {
  std::string label;
  int64_t B, L, heads, D;
  bool causal;
};

// Self-attention of the UNet (attn1, T = 2 denoising rows at 512x512), MiDaS ViT and CLIP text.
std::vector<PackedCase> packed_cases() {
  return {
      {"unet_l1_4096_d40", 2, 4096, 8, 40, false},  {"unet_l2_1024_d80", 2, 1024, 8, 80, false},
      {"unet_l3_256_d160", 2, 256, 8, 160, false},  {"unet_mid_64_d160", 2, 64, 8, 160, false},
      {"midas_vit_577_d64", 1, 577, 12, 64, false}, {"causal/clip_77_d64", 1, 77, 12, 64, true},
      {"edge/d20_fallback", 1, 70, 4, 20, false},  // D % 8 != 0: the simple kernel on every device
  };
}

void run_packed(const PackedCase& a, Ctx& cpu, std::vector<Ctx>& devs, Rng& rng) {
  const int64_t C = a.heads * a.D;
  // q in [-3, 3] (a peaky softmax), k and v in [-1, 1]: the column blocks drawn separately.
  std::vector<float> qkv(size_t(a.B * a.L * 3 * C));
  for (int64_t t = 0; t < a.B * a.L; ++t)
    for (int64_t c = 0; c < 3 * C; ++c)
      qkv[size_t(t * 3 * C + c)] = c < C ? rng.uniform(-3.f, 3.f) : rng.uniform(-1.f, 1.f);
  const std::vector<Input> in = {f_in("qkv", {a.B, a.L, 3 * C}, qkv), i_in("params", {2}, {a.heads, a.causal ? 1 : 0})};
  const std::string label = "packed/" + a.label;
  std::vector<std::vector<float>> want, got;
  if (!run(cpu, label.c_str(), "self_attention", in, {"y"}, want)) return;
  for (Ctx& d : devs)
    if (run(d, label.c_str(), "self_attention", in, {"y"}, got)) compare(label.c_str(), d, "y", want[0], got[0]);
}

// The motion modules' temporal attention at every UNet level (512x512), one call in the rolling
// state of the 16-slot window, q/k/v read from the packed projection.
std::vector<TemporalCase> packed_temporal_cases() {
  return {
      {"l1_4096_c320_d40_r2", 2, 4096, 8, 40, false},
      {"l2_1024_c640_d80_r2", 2, 1024, 8, 80, false},
      {"l3_256_c1280_d160_r2", 2, 256, 8, 160, false},
      {"l4_64_c1280_d160_r3", 3, 64, 8, 160, false},
  };
}

void run_packed_temporal(const TemporalCase& t, Ctx& cpu, std::vector<Ctx>& devs, Rng& rng) {
  const int64_t C = t.heads * t.D;
  Bookkeeping bk(int(t.R), kWindow, kSink);
  for (int f = 0; f < 12; ++f) bk.advance();  // all slots valid, PEs rolling
  std::vector<Input> in = temporal_inputs(t, bk, {}, rng);
  // Replace q, k, v (inputs 0..2) by one packed tensor whose column blocks are they.
  std::vector<float> qkv(size_t(t.R * t.P * 3 * C));
  for (int64_t row = 0; row < t.R * t.P; ++row)
    for (int j = 0; j < 3; ++j)
      std::copy_n(in[size_t(j)].f.begin() + row * C, C, qkv.begin() + row * 3 * C + j * C);
  in.erase(in.begin(), in.begin() + 3);
  in.insert(in.begin(), f_in("qkv", {t.R, t.P, 3 * C}, std::move(qkv)));
  std::vector<float>& cache = in[1].f;  // "cache"
  cache.resize(size_t(numel({t.R, 2, t.P, kWindow, C})));
  for (float& v : cache) v = rng.uniform(-1.f, 1.f);
  const std::string label = "packed_temporal/" + t.label;
  std::vector<std::vector<float>> want, got;
  if (!run(cpu, label.c_str(), "stream_temporal_attention_qkv", in, {"y", "cache_out"}, want)) return;
  for (Ctx& d : devs) {
    if (!run(d, label.c_str(), "stream_temporal_attention_qkv", in, {"y", "cache_out"}, got)) continue;
    compare(label.c_str(), d, "y", want[0], got[0]);
    compare(label.c_str(), d, "cache_out", want[1], got[1]);
  }
}

bool open_ctx(Ctx& c, const char* kind, const char* options) {
  if (c.attention) setenv("L2D_ATTENTION", c.attention, 1);
  else unsetenv("L2D_ATTENTION");
  if (c.fuse) setenv("L2D_FUSE", c.fuse, 1);
  else unsetenv("L2D_FUSE");
  if (l2d_context_create(kind, options, &c.ctx) != L2D_OK) {
    std::printf("cannot create %s context: %s\n", c.name, l2d_last_error());
    return false;
  }
  l2d_tmap* weights = nullptr;
  l2d_tmap_create(&weights);
  const l2d_status st = l2d_model_create(c.ctx, "ops", "{}", weights, &c.model);
  l2d_tmap_free(weights);
  if (st != L2D_OK) {
    std::printf("cannot create the ops model on %s: %s\n", c.name, l2d_last_error());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bool self = std::getenv("L2D_TEST_SELF") != nullptr;
  int32_t available = 0;
  if (!self && (l2d_backend_available("cuda", &available) != L2D_OK || !available)) {
    // Exit 77 (the op-test convention for "CUDA could not start"): gpu-check reports a failed step.
    std::printf("test_cuda_attention: no GPU: the CUDA backend is unavailable (test_cuda_ops prints why)   FAIL\n");
    return 77;
  }
  const char* filter = argc > 1 ? argv[1] : nullptr;
  const char* kind = self ? "cpu" : "cuda";
  Ctx cpu{"cpu", nullptr, false};
  std::vector<Ctx> devs{{"cuda-fp32-simple", "simple", false},
                        {"cuda-fp32-tc", "tc", false},
                        {"cuda-fp16-simple", "simple", true},
                        {"cuda-fp16-tc", "tc", true}};
  // The packed ops also run with the qkv fusion off (the default composition on the device).
  Ctx unfused{"cuda-fp16-tc-nofuse", "tc", true, "none"};
  if (!open_ctx(cpu, "cpu", nullptr)) return 1;
  for (Ctx& d : devs)
    if (!open_ctx(d, kind, d.fp16 ? "{\"precision\":\"fp16\"}" : "{\"precision\":\"fp32\"}")) return 1;
  if (!open_ctx(unfused, kind, "{\"precision\":\"fp16\"}")) return 1;
  unsetenv("L2D_ATTENTION");
  unsetenv("L2D_FUSE");
  std::vector<Ctx> packed_devs = devs;  // shallow copies of the handles (freed once, below)
  packed_devs.push_back(unfused);

  // A bad L2D_ATTENTION value is a clear error at context creation, not a silent default.
  if (!self) {
    setenv("L2D_ATTENTION", "fast", 1);
    l2d_context* bad = nullptr;
    const l2d_status st = l2d_context_create("cuda", nullptr, &bad);
    const bool ok = st == L2D_ERR_INVALID_ARGUMENT && std::strstr(l2d_last_error(), "L2D_ATTENTION");
    std::printf("%-40s status %d%s\n", "env/L2D_ATTENTION=fast", int(st), ok ? "" : "   FAIL");
    if (!ok) ++failures;
    if (bad) l2d_context_free(bad);
    unsetenv("L2D_ATTENTION");
  }

  Rng rng(2024);
  for (const AttnCase& a : attention_cases())
    if (!filter || ("attention/" + a.label).find(filter) != std::string::npos) run_attention(a, cpu, devs, rng);
  for (const TemporalCase& t : temporal_cases())
    if (!filter || ("temporal/" + t.label).find(filter) != std::string::npos) run_temporal(t, cpu, devs, rng);
  for (const PackedCase& a : packed_cases())
    if (!filter || ("packed/" + a.label).find(filter) != std::string::npos) run_packed(a, cpu, packed_devs, rng);
  for (const TemporalCase& t : packed_temporal_cases())
    if (!filter || ("packed_temporal/" + t.label).find(filter) != std::string::npos)
      run_packed_temporal(t, cpu, packed_devs, rng);

  devs.push_back(unfused);
  for (Ctx& c : devs) {
    l2d_model_free(c.model);
    l2d_context_free(c.ctx);
  }
  l2d_model_free(cpu.model);
  l2d_context_free(cpu.ctx);
  if (failures) std::printf("test_cuda_attention: %d FAILED\n", failures);
  else std::printf("test_cuda_attention: all ok\n");
  return failures ? 1 : 0;
}
