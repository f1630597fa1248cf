// ops_model.cpp: the "ops" model exposes single backend ops by name, so tests can run any op on
// any backend from TS (CUDA vs CPU reference, ggml test-backend-ops style) and a tensor can
// round-trip TS -> native -> TS. Scalar parameters travel as small tensors in the same map.
#include <cstring>

#include "../../pipeline/frame_prep.h"
#include "../model.h"

namespace l2d {
namespace {

class OpsModel final : public Model {
 public:
  explicit OpsModel(Backend& be) : be_(be) {}

  void run(const std::string& method, TensorMap& io) override {
    auto in = [&](const char* name) { return be_.from_host(io.at(name, "ops model")); };
    auto opt = [&](const char* name) { return io.has(name) ? be_.from_host(io.at(name, "ops")) : Tensor(); };
    auto scalars = [&](const char* name) { return io.at(name, "ops model").to_f32(); };
    auto ints = [&](const char* name) { return io.at(name, "ops model").to_i64(); };
    Tensor y;
    if (method == "identity") {
      y = in("x");
    } else if (method == "linear") {
      Tensor b = opt("b");
      y = be_.linear(in("x"), in("w"), b.defined() ? &b : nullptr);
    } else if (method == "matmul") {
      y = be_.matmul(in("a"), in("b"));
    } else if (method == "conv2d") {
      Tensor b = opt("b");
      const auto p = ints("params");  // [stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right]
      L2D_REQUIRE(p.size() == 6, "conv2d params must have 6 values");
      y = be_.conv2d(in("x"), in("w"), b.defined() ? &b : nullptr,
                     Conv2dParams{int(p[0]), int(p[1]), int(p[2]), int(p[3]), int(p[4]), int(p[5])});
    } else if (method == "conv_transpose2d") {
      Tensor b = opt("b");
      y = be_.conv_transpose2d(in("x"), in("w"), b.defined() ? &b : nullptr, int(ints("stride")[0]));
    } else if (method == "group_norm") {
      const auto p = scalars("params");  // [groups, eps, silu]
      y = be_.group_norm(in("x"), int(p[0]), in("gamma"), in("beta"), p[1], p[2] != 0.f);
    } else if (method == "layer_norm") {
      y = be_.layer_norm(in("x"), in("gamma"), in("beta"), scalars("eps")[0]);
    } else if (method == "attention") {
      const auto p = ints("params");  // [heads, causal]
      y = be_.attention(in("q"), in("k"), in("v"), int(p[0]), p[1] ? AttnMask::Causal : AttnMask::None);
    } else if (method == "stream_temporal_attention") {
      Tensor cache = in("cache");
      y = be_.stream_temporal_attention(in("q"), in("k"), in("v"), cache, in("qpe"), in("kpe"), in("vpe"),
                                        in("pe_idx"), in("update_idx"), in("bias"), int(ints("heads")[0]));
      io.put("cache_out", be_.to_host(cache));
    } else if (method == "unary") {
      const auto p = scalars("params");  // [op, a, b]
      y = be_.unary(in("x"), Unary(int(p[0])), p[1], p[2]);
    } else if (method == "binary") {
      y = be_.binary(in("a"), in("b"), Binary(int(scalars("op")[0])));
    } else if (method == "geglu") {
      y = be_.geglu(in("x"));
    } else if (method == "permute") {
      std::vector<int> perm;
      for (int64_t v : ints("perm")) perm.push_back(int(v));
      y = be_.permute(in("x"), perm);
    } else if (method == "upsample_nearest") {
      const auto s = ints("size");
      y = be_.upsample_nearest(in("x"), int(s[0]), int(s[1]));
    } else if (method == "resize_bilinear") {
      const auto s = ints("size");  // [h, w, align_corners]
      y = be_.resize_bilinear(in("x"), int(s[0]), int(s[1]), s[2] != 0);
    } else if (method == "max_pool2d") {
      const auto p = ints("params");  // [kernel, stride, pad_top, pad_bottom, pad_left, pad_right]
      y = be_.max_pool2d(in("x"), int(p[0]), Conv2dParams{int(p[1]), int(p[1]), int(p[2]), int(p[3]), int(p[4]), int(p[5])});
    } else if (method == "embedding") {
      y = be_.embedding(in("ids"), in("table"));
    } else if (method == "minmax_normalize") {
      y = be_.minmax_normalize(in("x"));
    } else if (method == "slice") {
      const auto p = ints("params");  // [dim, start, end, step]
      y = be_.slice(in("x"), int(p[0]), p[1], p[2], p[3]);
    } else if (method == "fit_frame") {
      // The stream's frame preparation (scale to cover, antialias, centre-crop), for tests.
      const HostTensor& f = io.at("frame", "ops model");
      const auto size = ints("size");  // [height, width]
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 3 && size.size() == 2, "fit_frame needs frame U8 [H, W, C]");
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
      const auto size = ints("size");  // [height, width]
      L2D_REQUIRE(f.dtype == L2D_U8 && f.shape.size() == 3 && size.size() == 2,
                  "image_fit_from_u8 needs frame U8 [H, W, C] and size [h, w]");
      y = be_.image_fit_from_u8(f.bytes.data(), f.shape[0], f.shape[1], int(f.shape[2]), size[0], size[1]);
    } else if (method == "random_normal_counter") {
      // params [seed, stream, offset, add], counter I32 [1], shape [...]: y = normal(shape, seed,
      // stream, counter + offset), then counter += add on the device (returned as counter_out).
      const auto p = ints("params");
      const auto sh = ints("shape");
      L2D_REQUIRE(p.size() == 4, "random_normal_counter params must be [seed, stream, offset, add]");
      Tensor counter = in("counter");
      L2D_REQUIRE(counter.dtype() == DType::I32 && counter.numel() == 1, "counter must be one integer");
      y = be_.random_normal_counter(Shape(sh.begin(), sh.end()), uint32_t(p[0]), uint32_t(p[1]), counter,
                                    int32_t(p[2]));
      be_.counter_add(counter, int32_t(p[3]));
      io.put("counter_out", be_.to_host(counter));
    } else if (method == "kv_advance") {
      // Backend::kv_advance applied `times` times to bias [R, W], pe_idx [R, W], update_idx [R].
      Tensor bias = in("bias"), pe = in("pe_idx"), upd = in("update_idx");
      const auto p = ints("params");  // [sink, times]
      L2D_REQUIRE(p.size() == 2 && p[0] >= 0 && p[0] < bias.dim(-1) && pe.dtype() == DType::I32,
                  "kv_advance needs params [sink, times] and integer pe_idx");
      for (int64_t i = 0; i < p[1]; ++i) be_.kv_advance(bias, pe, upd, int(p[0]));
      io.put("pe_idx_out", be_.to_host(pe));
      io.put("update_idx_out", be_.to_host(upd));
      y = bias;
    } else if (method == "concat") {
      y = be_.concat({in("a"), in("b")}, int(ints("dim")[0]));
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
