// midas_model.cpp: the whole DPTDepthModel (see midas.h) and the "midas" model kind.
//   config  = {"vit_num_heads": n, "groupnorm_groups": g, "vit_hooks": [8, 11]} (all optional;
//             defaults embed_dim / 64 heads, 32 groups, hooks [8, 11] as in vitb_rn50_384);
//   weights = a dpt_hybrid_384.pt state dict (the unused classifier head, final ViT norm and
//             scratch.refinenet4.resConfUnit1 may be present or absent).
//   method "depth": io "images" F32 [N, 3, H, W] (H, W positive multiples of 32, MiDaS input
//             convention (x - 0.5) / 0.5, i.e. [-1, 1]) -> "depth" [N, H, W] (non-negative).
//             With io "debug" = [1] also "layer_1".."layer_4": the reassembled features
//             (inputs of scratch.layerk_rn).
#include <algorithm>
#include <memory>

#include "../../core/config.h"
#include "../model.h"
#include "midas.h"

namespace l2d::midas {

namespace {

constexpr int kMultiple = 32;  // layer_4 is at 1/32 and the fusion blocks upsample by exactly 2

int config_groups(const Json& config) {
  return int(ConfigReader(config, "midas config").integer("groupnorm_groups", 32, 1, 1 << 16));
}

int config_heads(const Json& config, WeightLoader& w) {
  const ConfigReader c(config, "midas config");
  if (c.has("vit_num_heads")) return int(c.integer("vit_num_heads", 1, 1 << 16));
  const Shape& cs = w.shape_of("pretrained.model.cls_token");
  const int64_t dim = cs.empty() ? 0 : cs.back();
  if (dim < 64 || dim % 64 != 0)
    fail(L2D_ERR_FORMAT, "midas config: \"vit_num_heads\" is required for embed dim ", dim, " (not a multiple of 64)");
  return int(dim / 64);
}

// Block indices; out-of-range ones are refused by the ViT against its real depth.
std::vector<int> config_hooks(const Json& config) {
  const ConfigReader c(config, "midas config");
  if (!c.has("vit_hooks")) return {8, 11};
  std::vector<int> hooks;
  for (int64_t v : c.integers("vit_hooks", 2, 2, -1, 1 << 16)) hooks.push_back(int(v));
  return hooks;
}

int last_stage_channels(const ResNetV2& backbone) {
  if (backbone.num_stages() != 3)
    fail(L2D_ERR_FORMAT, "midas model: the hybrid backbone must have 3 ResNet stages, the weights have ",
         backbone.num_stages());
  return backbone.stage_channels(2);
}

}  // namespace

Midas::Midas(Backend& be, const Json& config, WeightLoader& w)
    : be_(be),
      backbone_(be, w, "pretrained.model.patch_embed.backbone.", config_groups(config)),
      vit_(be, w, "pretrained.model.", last_stage_channels(backbone_), config_heads(config, w), config_hooks(config)),
      scratch_(be, w, vit_.embed_dim(), backbone_.stage_channels(0), backbone_.stage_channels(1)) {}

Tensor Midas::depth(const Tensor& images, std::vector<Tensor>* layers) const {
  if (images.ndim() != 4 || images.dim(1) != 3)
    fail(L2D_ERR_INVALID_ARGUMENT, "midas depth: images must be [N, 3, H, W], got ", shape_str(images.shape()));
  if (images.dim(0) < 1 || images.dim(2) < kMultiple || images.dim(3) < kMultiple || images.dim(2) % kMultiple != 0 ||
      images.dim(3) % kMultiple != 0)
    fail(L2D_ERR_INVALID_ARGUMENT, "midas depth: image height and width must be positive multiples of ", kMultiple,
         ", got ", shape_str(images.shape()));
  const int64_t N = images.dim(0), H = images.dim(2), W = images.dim(3);
  std::vector<Tensor> feats = backbone_.forward(images);
  const int gh = int(feats[2].dim(2)), gw = int(feats[2].dim(3));
  L2D_ASSERT(int64_t(gh) * backbone_.reduction() == H && int64_t(gw) * backbone_.reduction() == W);
  std::vector<Tensor> hooked = vit_.forward(feats[2]);
  std::vector<Tensor> l = {feats[0], feats[1], scratch_.reassemble(3, hooked[0], gh, gw),
                           scratch_.reassemble(4, hooked[1], gh, gw)};
  feats.clear();
  hooked.clear();
  Tensor d = scratch_.decode(l);
  L2D_ASSERT(d.dim(2) == H && d.dim(3) == W);
  if (layers) *layers = std::move(l);
  return d.reshape({N, H, W});
}

namespace {

class MidasModel final : public Model {
 public:
  MidasModel(Backend& be, const Json& config, const TensorMap& weights) : be_(be) {
    WeightLoader w(be, weights, "midas");
    net_ = std::make_unique<Midas>(be, config, w);
    w.check_all_used({"pretrained.model.head.", "pretrained.model.norm.", "scratch.refinenet4.resConfUnit1."});
  }

  void run(const std::string& method, TensorMap& io) override {
    if (method != "depth") unknown_method("midas", method);
    const HostTensor& images = io.at("images", "midas depth");
    if (images.dtype != L2D_F32 && images.dtype != L2D_F16 && images.dtype != L2D_BF16)
      fail(L2D_ERR_INVALID_ARGUMENT, "midas: \"images\" must be a float tensor, got ", dtype_name(images.dtype));
    bool debug = false;
    if (io.has("debug")) {
      const std::vector<float> v = io.at("debug", "midas depth").to_f32();
      debug = !v.empty() && v[0] != 0.f;
    }
    std::vector<Tensor> layers;
    const Tensor d = net_->depth(be_.from_host(images), debug ? &layers : nullptr);
    io.put("depth", be_.to_host(d));
    for (size_t i = 0; i < layers.size(); ++i) io.put("layer_" + std::to_string(i + 1), be_.to_host(layers[i]));
  }
  const void* component(const std::type_info& type) const override { return type == typeid(Midas) ? net_.get() : nullptr; }

 private:
  Backend& be_;
  std::unique_ptr<Midas> net_;
};

const ModelRegistrar kRegistrar("midas", [](Backend& be, const Json& config, const TensorMap& weights) {
  return std::unique_ptr<Model>(new MidasModel(be, config, weights));
});

}  // namespace
}  // namespace l2d::midas
