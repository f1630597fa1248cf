// ops_model.cpp: the "ops" model exposes single backend ops by name, so tests can run any op on
// any backend from TS (CUDA vs CPU reference, ggml test-backend-ops style) and a tensor can
// round-trip TS -> native -> TS. Scalar parameters travel as small tensors in the same map.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../pipeline/frame_prep.h"
#include "../model.h"

namespace l2d {
namespace {

// The ops model is reachable through the C ABI with any tensors, so each method checks what its
// backend op divides by, indexes with or allocates from (parameter counts, ranges, ranks) and
// refuses with L2D_ERR_INVALID_ARGUMENT; the ops' own shape asserts then cover the rest.
constexpr int64_t kMaxSide = 16384;            // output sides of resampling ops
constexpr int64_t kMaxOutputElements = 1 << 28;  // 1 GiB of float32 per output
constexpr int64_t kMaxStride = 64, kMaxPad = 1024;

int checked(int64_t v, int64_t lo, int64_t hi, const char* what) {
  L2D_REQUIRE(v >= lo && v <= hi, "ops: ", what, " must be ", lo, "..", hi, ", got ", v);
  return int(v);
}

// A float parameter as an integer for checked(): out-of-range values (undefined to convert) map to
// INT64_MIN, which every range refuses.
int64_t as_int(float f) { return std::fabs(f) < 4.0e18f ? int64_t(f) : INT64_MIN; }

void require_rank(const Tensor& t, int lo, int hi, const char* name) {
  L2D_REQUIRE(t.ndim() >= lo && t.ndim() <= hi, "ops: \"", name, "\" must have ", lo, "..", hi, " dimensions, got ",
              shape_str(t.shape()));
  for (int64_t d : t.shape()) L2D_REQUIRE(d >= 1, "ops: \"", name, "\" has an empty dimension: ", shape_str(t.shape()));
}

void require_output(int64_t a, int64_t b, int64_t c, const char* what) {
  L2D_REQUIRE(double(a) * double(b) * double(c) <= double(kMaxOutputElements), "ops: the ", what, " output of ", a,
              " x ", b, " x ", c, " elements is larger than ", kMaxOutputElements);
}

Conv2dParams conv_params(const std::vector<int64_t>& p) {
  return Conv2dParams{checked(p[0], 1, kMaxStride, "stride"), checked(p[1], 1, kMaxStride, "stride"),
                      checked(p[2], 0, kMaxPad, "padding"),   checked(p[3], 0, kMaxPad, "padding"),
                      checked(p[4], 0, kMaxPad, "padding"),   checked(p[5], 0, kMaxPad, "padding")};
}

class OpsModel final : public Model {
 public:
  explicit OpsModel(Backend& be) : be_(be) {}

  void run(const std::string& method, TensorMap& io) override {
    auto in = [&](const char* name) { return be_.from_host(io.at(name, "ops model")); };
    auto opt = [&](const char* name) { return io.has(name) ? be_.from_host(io.at(name, "ops")) : Tensor(); };
    // Parameter vectors of exactly n values.
    auto scalars = [&](const char* name, size_t n) {
      std::vector<float> v = io.at(name, "ops model").to_f32();
      L2D_REQUIRE(v.size() == n, "ops ", method, ": \"", name, "\" must have ", n, " values, got ", v.size());
      for (float f : v) L2D_REQUIRE(std::isfinite(f), "ops ", method, ": \"", name, "\" must be finite");
      return v;
    };
    auto ints = [&](const char* name, size_t n) {
      std::vector<int64_t> v = io.at(name, "ops model").to_i64();
      L2D_REQUIRE(v.size() == n, "ops ", method, ": \"", name, "\" must have ", n, " values, got ", v.size());
      return v;
    };
    Tensor y;
    if (method == "identity") {
      y = in("x");
    } else if (method == "linear") {
      Tensor b = opt("b");
      const Tensor x = in("x"), w = in("w");
      require_rank(x, 1, 8, "x");
      require_rank(w, 2, 2, "w");
      y = be_.linear(x, w, b.defined() ? &b : nullptr);
    } else if (method == "linear_add") {  // linear(x, w, b) + r in one op
      Tensor b = opt("b");
      const Tensor x = in("x"), w = in("w"), r = in("r");
      require_rank(x, 1, 8, "x");
      require_rank(w, 2, 2, "w");
      L2D_REQUIRE(w.dim(1) == x.dim(-1), "ops linear_add: w ", shape_str(w.shape()), " does not fit x ",
                  shape_str(x.shape()));
      Shape out = x.shape();
      out.back() = w.dim(0);
      L2D_REQUIRE(r.shape() == out, "ops linear_add: \"r\" must have the output shape ", shape_str(out), ", got ",
                  shape_str(r.shape()));
      y = be_.linear_add(x, w, b.defined() ? &b : nullptr, r);
    } else if (method == "linear_geglu") {  // geglu(linear(x, w, b)): w [2C, K], b [2C] -> [.., C]
      Tensor b = opt("b");
      const Tensor x = in("x"), w = in("w");
      require_rank(x, 1, 8, "x");
      require_rank(w, 2, 2, "w");
      L2D_REQUIRE(w.dim(1) == x.dim(-1), "ops linear_geglu: w ", shape_str(w.shape()), " does not fit x ",
                  shape_str(x.shape()));
      L2D_REQUIRE(w.dim(0) > 0 && w.dim(0) % 2 == 0, "ops linear_geglu: w must have an even, positive number of rows",
                  " (value rows then gate rows), got ", shape_str(w.shape()));
      L2D_REQUIRE(!b.defined() || (b.ndim() == 1 && b.dim(0) == w.dim(0)), "ops linear_geglu: \"b\" must be [",
                  w.dim(0), "], got ", shape_str(b.shape()));
      require_output(x.numel() / x.dim(-1), w.dim(0) / 2, 1, "linear_geglu");
      y = be_.linear_geglu(x, w, b.defined() ? &b : nullptr);
    } else if (method == "matmul") {
      const Tensor a = in("a"), b = in("b");
      require_rank(a, 2, 8, "a");
      require_rank(b, 2, 8, "b");
      y = be_.matmul(a, b);
    } else if (method == "conv2d") {
      Tensor b = opt("b");
      const auto p = ints("params", 6);  // [stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right]
      const Tensor x = in("x"), w = in("w");
      require_rank(x, 4, 4, "x");
      require_rank(w, 4, 4, "w");
      const Conv2dParams cp = conv_params(p);
      L2D_REQUIRE(x.dim(2) + cp.pad_top + cp.pad_bottom >= w.dim(2) && x.dim(3) + cp.pad_left + cp.pad_right >= w.dim(3),
                  "ops conv2d: the kernel ", shape_str(w.shape()), " is larger than the padded input ", shape_str(x.shape()));
      y = be_.conv2d(x, w, b.defined() ? &b : nullptr, cp);
    } else if (method == "conv2d_fused") {  // conv2d(x, w, b) + bn ([N|1, O]) + r ([N, O, Ho, Wo]) in one op
      Tensor b = opt("b"), bn = opt("bn"), r = opt("r");
      const auto p = ints("params", 6);  // as conv2d
      const Tensor x = in("x"), w = in("w");
      require_rank(x, 4, 4, "x");
      require_rank(w, 4, 4, "w");
      const Conv2dParams cp = conv_params(p);
      L2D_REQUIRE(w.dim(1) == x.dim(1), "ops conv2d_fused: w ", shape_str(w.shape()), " does not fit the channels of x ",
                  shape_str(x.shape()));
      L2D_REQUIRE(x.dim(2) + cp.pad_top + cp.pad_bottom >= w.dim(2) && x.dim(3) + cp.pad_left + cp.pad_right >= w.dim(3),
                  "ops conv2d_fused: the kernel ", shape_str(w.shape()), " is larger than the padded input ",
                  shape_str(x.shape()));
      const int64_t N = x.dim(0), O = w.dim(0);
      const int64_t Ho = (x.dim(2) + cp.pad_top + cp.pad_bottom - w.dim(2)) / cp.stride_h + 1;
      const int64_t Wo = (x.dim(3) + cp.pad_left + cp.pad_right - w.dim(3)) / cp.stride_w + 1;
      require_output(N * O, Ho, Wo, "conv2d_fused");
      L2D_REQUIRE(!b.defined() || b.shape() == Shape({O}), "ops conv2d_fused: \"b\" must be [", O, "], got ",
                  shape_str(b.shape()));
      L2D_REQUIRE(!bn.defined() || bn.shape() == Shape({N, O}) || bn.shape() == Shape({1, O}),
                  "ops conv2d_fused: \"bn\" must be [", N, ", ", O, "] or [1, ", O, "], got ", shape_str(bn.shape()));
      L2D_REQUIRE(!r.defined() || r.shape() == Shape({N, O, Ho, Wo}), "ops conv2d_fused: \"r\" must have the output shape ",
                  shape_str({N, O, Ho, Wo}), ", got ", shape_str(r.shape()));
      y = be_.conv2d_fused(x, w, b.defined() ? &b : nullptr, bn.defined() ? &bn : nullptr, r.defined() ? &r : nullptr,
                           cp);
    } else if (method == "conv_transpose2d") {
      Tensor b = opt("b");
      const Tensor x = in("x"), w = in("w");
      require_rank(x, 4, 4, "x");
      require_rank(w, 4, 4, "w");
      const int stride = checked(ints("stride", 1)[0], 1, kMaxStride, "stride");
      require_output(x.dim(0) * w.dim(1), (x.dim(2) - 1) * stride + w.dim(2), (x.dim(3) - 1) * stride + w.dim(3),
                     "conv_transpose2d");
      y = be_.conv_transpose2d(x, w, b.defined() ? &b : nullptr, stride);
    } else if (method == "group_norm") {
      const auto p = scalars("params", 3);  // [groups, eps, silu]
      const Tensor x = in("x");
      require_rank(x, 2, 8, "x");
      const int groups = checked(as_int(p[0]), 1, x.dim(1), "groups");
      L2D_REQUIRE(x.dim(1) % groups == 0, "ops group_norm: ", x.dim(1), " channels are not divisible by ", groups,
                  " groups");
      y = be_.group_norm(x, groups, in("gamma"), in("beta"), p[1], p[2] != 0.f);
    } else if (method == "group_norm_tokens") {  // group_norm written as tokens [N, S, C]
      const auto p = scalars("params", 3);        // [groups, eps, silu]
      const Tensor x = in("x"), gamma = in("gamma"), beta = in("beta");
      require_rank(x, 2, 8, "x");
      const int groups = checked(as_int(p[0]), 1, x.dim(1), "groups");
      L2D_REQUIRE(x.dim(1) % groups == 0, "ops group_norm_tokens: ", x.dim(1), " channels are not divisible by ",
                  groups, " groups");
      L2D_REQUIRE(gamma.numel() == x.dim(1) && beta.numel() == x.dim(1), "ops group_norm_tokens: gamma ",
                  shape_str(gamma.shape()), " and beta ", shape_str(beta.shape()), " must have ", x.dim(1), " values");
      y = be_.group_norm_tokens(x, groups, gamma, beta, p[1], p[2] != 0.f);
    } else if (method == "linear_to_image") {  // permute(linear(t, w, b) as [N, h, w, O]) (+ r), NCHW
      Tensor b = opt("b"), r = opt("r");
      const Tensor t = in("t"), w = in("w");
      require_rank(t, 3, 3, "t");
      require_rank(w, 2, 2, "w");
      const auto hw = ints("hw", 2);  // [height, width]
      const int64_t height = checked(hw[0], 1, kMaxSide, "height"), width = checked(hw[1], 1, kMaxSide, "width");
      L2D_REQUIRE(height * width == t.dim(1), "ops linear_to_image: ", height, " x ", width, " pixels do not match the ",
                  t.dim(1), " tokens of t ", shape_str(t.shape()));
      L2D_REQUIRE(w.dim(1) == t.dim(2), "ops linear_to_image: w ", shape_str(w.shape()), " does not fit t ",
                  shape_str(t.shape()));
      L2D_REQUIRE(!b.defined() || (b.ndim() == 1 && b.dim(0) == w.dim(0)), "ops linear_to_image: \"b\" must be [",
                  w.dim(0), "], got ", shape_str(b.shape()));
      const Shape out{t.dim(0), w.dim(0), height, width};
      require_output(t.dim(0), w.dim(0), t.dim(1), "linear_to_image");
      L2D_REQUIRE(!r.defined() || r.shape() == out, "ops linear_to_image: \"r\" must have the output shape ",
                  shape_str(out), ", got ", shape_str(r.shape()));
      y = be_.linear_to_image(t, w, b.defined() ? &b : nullptr, r.defined() ? &r : nullptr, height, width);
    } else if (method == "layer_norm") {
      const Tensor x = in("x");
      require_rank(x, 1, 8, "x");
      y = be_.layer_norm(x, in("gamma"), in("beta"), scalars("eps", 1)[0]);
    } else if (method == "attention") {
      const auto p = ints("params", 2);  // [heads, causal]
      const Tensor q = in("q"), k = in("k"), v = in("v");
      require_rank(q, 3, 3, "q");
      require_rank(k, 3, 3, "k");
      require_rank(v, 3, 3, "v");
      const int heads = checked(p[0], 1, q.dim(2), "heads");
      L2D_REQUIRE(q.dim(2) % heads == 0 && k.dim(2) % heads == 0 && v.dim(2) % heads == 0,
                  "ops attention: the channels are not divisible by ", heads, " heads");
      y = be_.attention(q, k, v, heads, p[1] ? AttnMask::Causal : AttnMask::None);
    } else if (method == "stream_temporal_attention") {
      Tensor cache = in("cache");
      const Tensor q = in("q");
      require_rank(q, 3, 3, "q");
      require_rank(cache, 5, 5, "cache");
      const int heads = checked(ints("heads", 1)[0], 1, q.dim(2), "heads");
      L2D_REQUIRE(q.dim(2) % heads == 0, "ops stream_temporal_attention: ", q.dim(2), " channels are not divisible by ",
                  heads, " heads");
      y = be_.stream_temporal_attention(q, in("k"), in("v"), cache, in("qpe"), in("kpe"), in("vpe"), in("pe_idx"),
                                        in("update_idx"), in("bias"), heads);
      io.put("cache_out", be_.to_host(cache));
    } else if (method == "self_attention") {  // attention of the three column blocks of qkv
      const auto p = ints("params", 2);       // [heads, causal]
      const Tensor qkv = in("qkv");
      require_rank(qkv, 3, 3, "qkv");
      L2D_REQUIRE(qkv.dim(2) % 3 == 0, "ops self_attention: \"qkv\" must have 3C channels, got ", qkv.dim(2));
      const int heads = checked(p[0], 1, qkv.dim(2) / 3, "heads");
      L2D_REQUIRE((qkv.dim(2) / 3) % heads == 0, "ops self_attention: ", qkv.dim(2) / 3,
                  " channels are not divisible by ", heads, " heads");
      y = be_.self_attention(qkv, heads, p[1] ? AttnMask::Causal : AttnMask::None);
    } else if (method == "stream_temporal_attention_qkv") {
      Tensor cache = in("cache");
      const Tensor qkv = in("qkv");
      require_rank(qkv, 3, 3, "qkv");
      require_rank(cache, 5, 5, "cache");
      L2D_REQUIRE(qkv.dim(2) % 3 == 0, "ops stream_temporal_attention_qkv: \"qkv\" must have 3C channels, got ",
                  qkv.dim(2));
      const int64_t C = qkv.dim(2) / 3;
      const int heads = checked(ints("heads", 1)[0], 1, C, "heads");
      L2D_REQUIRE(C % heads == 0, "ops stream_temporal_attention_qkv: ", C, " channels are not divisible by ", heads,
                  " heads");
      const Shape want = {qkv.dim(0), 2, qkv.dim(1), cache.dim(3), C};
      L2D_REQUIRE(cache.shape() == want, "ops stream_temporal_attention_qkv: \"cache\" must be ", shape_str(want),
                  ", got ", shape_str(cache.shape()));
      y = be_.stream_temporal_attention_qkv(qkv, cache, in("qpe"), in("kpe"), in("vpe"), in("pe_idx"),
                                            in("update_idx"), in("bias"), heads);
      io.put("cache_out", be_.to_host(cache));
    } else if (method == "unary") {
      const auto p = scalars("params", 3);  // [op, a, b]
      y = be_.unary(in("x"), Unary(checked(as_int(p[0]), 0, int(Unary::Clamp), "unary op")), p[1], p[2]);
    } else if (method == "binary") {
      y = be_.binary(in("a"), in("b"), Binary(checked(as_int(scalars("op", 1)[0]), 0, int(Binary::Div), "binary op")));
    } else if (method == "geglu") {
      const Tensor x = in("x");
      require_rank(x, 1, 8, "x");
      y = be_.geglu(x);
    } else if (method == "permute") {
      const Tensor x = in("x");
      std::vector<int> perm;
      std::vector<bool> seen(x.ndim(), false);
      for (int64_t v : ints("perm", x.ndim())) {
        const int d = checked(v, 0, int64_t(x.ndim()) - 1, "perm entry");
        L2D_REQUIRE(!seen[size_t(d)], "ops permute: perm repeats dimension ", d);
        seen[size_t(d)] = true;
        perm.push_back(d);
      }
      y = be_.permute(x, perm);
    } else if (method == "upsample_nearest" || method == "resize_bilinear") {
      const bool bilinear = method == "resize_bilinear";
      const auto s = ints("size", bilinear ? 3 : 2);  // [h, w(, align_corners)]
      const Tensor x = in("x");
      require_rank(x, 4, 4, "x");
      const int h = checked(s[0], 1, kMaxSide, "output height"), w = checked(s[1], 1, kMaxSide, "output width");
      require_output(x.dim(0) * x.dim(1), h, w, method.c_str());
      y = bilinear ? be_.resize_bilinear(x, h, w, s[2] != 0) : be_.upsample_nearest(x, h, w);
    } else if (method == "max_pool2d") {
      const auto p = ints("params", 6);  // [kernel, stride, pad_top, pad_bottom, pad_left, pad_right]
      const Tensor x = in("x");
      require_rank(x, 4, 4, "x");
      const int kernel = checked(p[0], 1, kMaxStride, "kernel");
      const Conv2dParams cp = conv_params({p[1], p[1], p[2], p[3], p[4], p[5]});
      L2D_REQUIRE(x.dim(2) + cp.pad_top + cp.pad_bottom >= kernel && x.dim(3) + cp.pad_left + cp.pad_right >= kernel,
                  "ops max_pool2d: the kernel ", kernel, " is larger than the padded input ", shape_str(x.shape()));
      y = be_.max_pool2d(x, kernel, cp);
    } else if (method == "embedding") {
      const Tensor table = in("table");
      require_rank(table, 2, 2, "table");
      y = be_.embedding(in("ids"), table);
    } else if (method == "minmax_normalize") {
      const Tensor x = in("x");
      require_rank(x, 1, 8, "x");
      y = be_.minmax_normalize(x);
    } else if (method == "slice") {
      const auto p = ints("params", 4);  // [dim, start, end, step]
      const Tensor x = in("x");
      require_rank(x, 1, 8, "x");
      // Negative dims count from the end, as in the backend ops.
      int dim = checked(p[0], -int64_t(x.ndim()), int64_t(x.ndim()) - 1, "slice dim");
      if (dim < 0) dim += x.ndim();
      checked(p[1], 0, x.dim(dim), "slice start");
      checked(p[2], p[1], x.dim(dim), "slice end");
      checked(p[3], 1, x.dim(dim), "slice step");
      y = be_.slice(x, dim, p[1], p[2], p[3]);
    } else if (method == "fit_frame") {
      // The stream's frame preparation (scale to cover, antialias, centre-crop), for tests.
      const HostTensor& f = io.at("frame", "ops model");
      const auto size = ints("size", 2);  // [height, width]
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 3, "fit_frame needs frame U8 [H, W, C]");
      checked(f.shape[0], 1, kMaxSide, "frame height");
      checked(f.shape[1], 1, kMaxSide, "frame width");
      checked(f.shape[2], 3, 4, "frame channels");
      checked(size[0], 1, kMaxSide, "fit height");
      checked(size[1], 1, kMaxSide, "fit width");
      std::vector<uint8_t> scratch;
      const uint8_t* out = fit_frame({f.bytes.data(), f.shape[1], f.shape[0], int(f.shape[2])}, size[1], size[0], scratch);
      HostTensor r;
      r.dtype = L2D_U8;
      r.shape = {size[0], size[1], f.shape[2]};
      r.bytes.assign(out, out + size_t(size[0] * size[1] * f.shape[2]));
      io.put("y", std::move(r));
      return;
    } else if (method == "image_fit_from_u8") {
      // Backend::image_fit_from_u8: one U8 [H, W, C] frame -> float [1, 3, h, w] (levels / 255).
      const HostTensor& f = io.at("frame", "ops model");
      const auto size = ints("size", 2);  // [height, width]
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 3, "image_fit_from_u8 needs frame U8 [H, W, C]");
      checked(f.shape[0], 1, kMaxSide, "frame height");
      checked(f.shape[1], 1, kMaxSide, "frame width");
      checked(f.shape[2], 3, 4, "frame channels");
      const int out_h = checked(size[0], 1, kMaxSide, "output size"), out_w = checked(size[1], 1, kMaxSide, "output size");
      require_output(3, out_h, out_w, "image_fit_from_u8");
      y = be_.image_fit_from_u8(f.bytes.data(), f.shape[0], f.shape[1], int(f.shape[2]), out_h, out_w);
    } else if (method == "image_cosine_similarity") {
      // Backend::image_cosine_similarity (the similar-image filter): a, b [1, 3, H, W] -> y [1].
      const Tensor a = in("a"), b = in("b");
      require_rank(a, 4, 4, "a");
      L2D_REQUIRE(a.dim(0) == 1 && a.dim(1) == 3 && a.shape() == b.shape(),
                  "image_cosine_similarity needs a and b [1, 3, H, W] of one shape");
      const float sim = float(be_.image_cosine_similarity(a, b));
      io.put("y", HostTensor::from_f32({1}, &sim));
      return;
    } else if (method == "random_normal_counter") {
      // params [seed, stream, offset, add], counter I32 [1], shape [...]: y = normal(shape, seed,
      // stream, counter + offset), then counter += add on the device (returned as counter_out).
      const auto p = ints("params", 4);
      const std::vector<int64_t> sh = io.at("shape", "ops model").to_i64();
      L2D_REQUIRE(!sh.empty() && sh.size() <= 8, "ops random_normal_counter: \"shape\" must have 1..8 values");
      double n = 1;
      for (int64_t d : sh) n *= double(checked(d, 1, kMaxOutputElements, "random_normal_counter shape"));
      require_output(int64_t(std::min(n, 9.0e18)), 1, 1, "random_normal_counter");
      checked(p[0], 0, UINT32_MAX, "seed");
      checked(p[1], 0, UINT32_MAX, "stream");
      checked(p[2], INT32_MIN, INT32_MAX, "offset");
      checked(p[3], INT32_MIN, INT32_MAX, "add");
      Tensor counter = in("counter");
      L2D_REQUIRE(counter.dtype() == DType::I32 && counter.numel() == 1, "counter must be one integer");
      y = be_.random_normal_counter(Shape(sh.begin(), sh.end()), uint32_t(p[0]), uint32_t(p[1]), counter,
                                    int32_t(p[2]));
      be_.counter_add(counter, int32_t(p[3]));
      io.put("counter_out", be_.to_host(counter));
    } else if (method == "kv_advance") {
      // Backend::kv_advance applied `times` times to bias [R, W], pe_idx [R, W], update_idx [R].
      Tensor bias = in("bias"), pe = in("pe_idx"), upd = in("update_idx");
      const auto p = ints("params", 2);  // [sink, times]
      require_rank(bias, 2, 2, "bias");
      L2D_REQUIRE(bias.dtype() == DType::F32 || bias.dtype() == DType::F16, "ops kv_advance: bias must be float");
      L2D_REQUIRE(pe.dtype() == DType::I32 && pe.shape() == bias.shape(), "ops kv_advance: pe_idx must be I32 ",
                  shape_str(bias.shape()));
      L2D_REQUIRE(upd.dtype() == DType::I32 && upd.ndim() == 1 && upd.dim(0) == bias.dim(0),
                  "ops kv_advance: update_idx must be I32 [", bias.dim(0), "]");
      const int sink = checked(p[0], 0, bias.dim(1) - 1, "sink");
      const int times = checked(p[1], 0, 4096, "times");
      for (int i = 0; i < times; ++i) be_.kv_advance(bias, pe, upd, sink);
      io.put("pe_idx_out", be_.to_host(pe));
      io.put("update_idx_out", be_.to_host(upd));
      y = bias;
    } else if (method == "concat") {
      const Tensor a = in("a"), b = in("b");
      require_rank(a, 1, 8, "a");
      y = be_.concat({a, b}, checked(ints("dim", 1)[0], -int64_t(a.ndim()), int64_t(a.ndim()) - 1, "concat dim"));
    } else if (method == "random_normal") {
      const auto p = ints("params", 3);  // [seed, stream, draw]
      const std::vector<int64_t> shape = io.at("shape", "ops model").to_i64();
      L2D_REQUIRE(!shape.empty() && shape.size() <= 8, "ops random_normal: \"shape\" must have 1..8 values");
      double n = 1;
      for (int64_t d : shape) n *= double(checked(d, 1, kMaxOutputElements, "random_normal shape"));
      require_output(int64_t(std::min(n, 9.0e18)), 1, 1, "random_normal");
      for (int64_t v : p) checked(v, 0, UINT32_MAX, "random_normal seed/stream/draw");
      y = be_.random_normal(shape, uint32_t(p[0]), uint32_t(p[1]), uint32_t(p[2]));
    } else if (method == "image_from_u8") {
      const HostTensor& f = io.at("frames", "ops model");  // U8 [N, H, W, C]
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 4, "image_from_u8 needs frames U8 [N, H, W, C]");
      for (int64_t d : f.shape) L2D_REQUIRE(d >= 1, "ops image_from_u8: empty frames ", shape_str(f.shape));
      checked(f.shape[3], 3, 4, "image_from_u8 channels");
      y = be_.image_from_u8(f.bytes.data(), f.shape[0], f.shape[1], f.shape[2], int(f.shape[3]));
    } else if (method == "frame_graph") {
      // The per-frame path of the stream in small (issue 15): frames U8 [N, H, W, C] go up one by
      // one through upload_bytes into ONE fixed buffer; a region (fit to size [h, w], 0.8 x + 0.1
      // squared, through a temporary freed inside it, uint8 into one fixed output) runs eagerly for
      // frame 0, is captured for frame 1 and replayed after; each output comes down through
      // download_bytes -> "u8" [N, h, w, 3]. After the capture, "bystander" tensors of the region's
      // sizes are filled with 0.25: "bystanders_intact" says no replay wrote into them (blocks of a
      // graph are never handed out). params [sync_inside, vary]: sync_inside 1 puts a synchronize()
      // in the region, so a capture must fail and fall back to eager; vary (for the CPU capture
      // audit, which must refuse it) makes frames after the capture differ from it: 1 one more
      // allocation, 2 a random_normal draw index that changes per frame. "captured" I32 [1]: 1 when
      // a graph was made. "graph_reserved_bytes": see below.
      const HostTensor& f = io.at("frames", "ops model");
      const auto size = ints("size", 2);
      const auto params = ints("params", 2);
      const bool sync_inside = params[0] != 0;
      const int vary = checked(params[1], 0, 2, "frame_graph vary");
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 4, "frame_graph needs frames U8 [N, H, W, C]");
      const int64_t n = checked(f.shape[0], 1, 64, "frame count"), h = checked(f.shape[1], 1, kMaxSide, "frame height"),
                    w = checked(f.shape[2], 1, kMaxSide, "frame width");
      const int c = checked(f.shape[3], 3, 4, "frame channels");
      const int oh = checked(size[0], 1, 4096, "output size"), ow = checked(size[1], 1, 4096, "output size");
      require_output(n, int64_t(oh) * ow, 3, "frame_graph");
      const size_t in_bytes = size_t(h * w * c), out_bytes = size_t(oh * ow * 3);
      Tensor frame(&be_, DType::I32, {int64_t((in_bytes + 3) / 4)}), out(&be_, DType::I32, {int64_t((out_bytes + 3) / 4)});
      int64_t k = 0;
      auto region = [&] {
        Tensor t = be_.unary(be_.image_fit_from_bytes(frame, h, w, c, oh, ow), Unary::Affine, 0.8f, 0.1f);
        if (vary == 1 && k >= 2) t = be_.unary(t, Unary::Relu);
        if (vary == 2) t = be_.binary(t, be_.unary(be_.random_normal(t.shape(), 1, 1, uint32_t(k)), Unary::Clamp, 0.f, 0.f),
                                      Binary::Add);
        const Tensor sq = be_.binary(t, t, Binary::Mul);
        t = Tensor();  // freed inside the region: the graph still owns its block
        if (sync_inside) be_.synchronize();
        be_.image_to_u8(be_.unary(sq, Unary::Clamp, 0.f, 1.f), out);
      };
      HostTensor u8;
      u8.dtype = L2D_U8;
      u8.shape = {n, oh, ow, 3};
      u8.bytes.resize(size_t(n) * out_bytes);
      int64_t graph = 0;
      std::vector<Tensor> bystanders;
      for (k = 0; k < n; ++k) {
        be_.upload_bytes(frame, f.bytes.data() + size_t(k) * in_bytes, in_bytes);
        if (k == 0) {
          region();
        } else if (k == 1) {
          std::string why;
          graph = be_.capture(region, &why);
          for (int i = 0; i < 4; ++i) {
            bystanders.push_back(be_.empty({1, 3, oh, ow}));
            be_.fill(bystanders.back(), 0.25f);
          }
        } else if (graph) {
          be_.replay(graph);
        } else {
          region();
        }
        be_.download_bytes(out, u8.bytes.data() + size_t(k) * out_bytes, out_bytes);
      }
      // "graph_reserved_bytes" I64 [3]: the backend's graph_reserved_bytes() while the graph
      // exists (its freed temporary is in it), after release_capture (0), and 1 when peak_bytes
      // covered bytes_in_use + the reserved bytes while the graph existed.
      const size_t reserved = be_.graph_reserved_bytes();
      const int64_t peak_covers = be_.peak_bytes() >= be_.bytes_in_use() + reserved ? 1 : 0;
      be_.release_capture(graph);
      const int64_t reserved_stats[3] = {int64_t(reserved), int64_t(be_.graph_reserved_bytes()), peak_covers};
      io.put("graph_reserved_bytes", HostTensor::from_i64({3}, reserved_stats));
      bool intact = true;
      for (const Tensor& b : bystanders)
        for (float v : be_.to_host(b).to_f32()) intact = intact && v == 0.25f;
      const int32_t flags[2] = {graph ? 1 : 0, intact ? 1 : 0};
      for (int i = 0; i < 2; ++i) {
        HostTensor r;
        r.dtype = L2D_I32;
        r.shape = {1};
        r.bytes.resize(4);
        std::memcpy(r.bytes.data(), &flags[i], 4);
        io.put(i == 0 ? "captured" : "bystanders_intact", std::move(r));
      }
      io.put("u8", std::move(u8));
      return;
    } else if (method == "image_to_host") {
      // x [N, 3, H, W] -> "y" float [N, H, W, 3] and "u8" uint8 [N, H, W, 3].
      const Tensor x = in("x");
      require_rank(x, 4, 4, "x");
      L2D_REQUIRE(x.dim(1) == 3, "image_to_host needs x [N, 3, H, W]");
      const Shape hwc{x.dim(0), x.dim(2), x.dim(3), 3};
      std::vector<float> f(size_t(shape_numel(hwc)));
      HostTensor u8;
      u8.dtype = L2D_U8;
      u8.shape = hwc;
      u8.bytes.resize(f.size());
      be_.image_to_host(x, f.data(), u8.bytes.data());
      io.put("y", HostTensor::from_f32(hwc, f.data()));
      io.put("u8", std::move(u8));
      return;
    } else {
      unknown_method("ops", method);
    }
    io.put("y", be_.to_host(y));
  }

 private:
  Backend& be_;
};

const ModelRegistrar kRegistrar("ops", [](Backend& be, const Json&, const TensorMap&) {
  return std::unique_ptr<Model>(new OpsModel(be));
});

}  // namespace
}  // namespace l2d
