// midas.h: MiDaS v3 DPT-Hybrid (DPTDepthModel, backbone "vitb_rn50_384", non_negative) on the
// Backend interface. The Midas class works on backend tensors so the pipeline can compute depth
// without host round trips; the "midas" model kind (midas_model.cpp) wraps it for the tensor-map ABI.
//
// Weight names are those of a dpt_hybrid_384.pt state dict ("pretrained.model.*",
// "pretrained.act_postprocess{3,4}.*", "scratch.*"). Every size (channels, blocks per stage, ViT
// width/depth, reassemble and fusion widths) is read from the weight shapes; only the number of
// attention heads and of GroupNorm groups cannot be derived and come from the config.
//
// Parts (one file each):
//   backbone.cpp  timm ResNetV2 (non-preact Bottleneck, StdConv2dSame eps 1e-8 with TF "SAME"
//                 padding, GroupNorm + ReLU, SAME max-pool): stem /4, stage 0 /1, later stages /2;
//   vit.cpp       timm ViT on the last stage's map (HybridEmbed 1x1 proj, cls token, pos-embed
//                 resized bilinearly with align_corners=False, pre-LN blocks with LayerNorm eps 1e-6,
//                 exact GELU), hooked block outputs, readout "project" (Linear(2C->C) + GELU);
//   scratch.cpp   reassemble convs, scratch.layerk_rn, FeatureFusionBlock_custom (bilinear x2
//                 align_corners=True), head conv -> bilinear x2 -> conv -> ReLU -> conv -> ReLU.
#pragma once

#include <string>
#include <vector>

#include "../../core/backend.h"
#include "../../core/json.h"
#include "../weights.h"

namespace l2d::midas {

// A PyTorch Conv2d with symmetric padding (bias optional).
struct Conv {
  Tensor w, b;
  int stride = 1, pad = 0;
};
// Loads "<name>.weight" (shape read from the file, checked against in/out/k when given >= 0) and
// "<name>.bias" when `bias`.
Conv load_conv(WeightLoader& w, const std::string& name, int out, int in, int k, bool bias, int stride, int pad);
Tensor conv(Backend& be, const Tensor& x, const Conv& c);

// timm ResNetV2 (vit_base_r50_s16_384's backbone) without its (identity) head.
class ResNetV2 {
 public:
  // prefix: "pretrained.model.patch_embed.backbone."
  ResNetV2(Backend& be, WeightLoader& w, const std::string& prefix, int groups);
  // Every stage's output, first stage first.
  std::vector<Tensor> forward(const Tensor& x) const;
  int num_stages() const { return int(stages_.size()); }
  int stage_channels(int s) const { return stage_channels_[size_t(s)]; }
  // Spatial reduction of the last stage (16 for 3 stages).
  int reduction() const { return 4 << (num_stages() - 1); }

 private:
  struct StdConv {
    Tensor w;  // standardised on the host at load time (the weights are constants)
    int k = 1, stride = 1;
  };
  struct Norm {
    Tensor gamma, beta;
  };
  struct Bottleneck {
    StdConv conv1, conv2, conv3, down;
    Norm norm1, norm2, norm3, down_norm;
    bool has_down = false;
  };

  StdConv load_std_conv(WeightLoader& w, const std::string& name, int out, int in, int k, int stride) const;
  Norm load_norm(WeightLoader& w, const std::string& name, int channels) const;
  Tensor std_conv(const Tensor& x, const StdConv& c) const;
  Tensor norm(const Tensor& x, const Norm& n, bool relu) const;
  Tensor bottleneck(const Tensor& x, const Bottleneck& b) const;

  Backend& be_;
  int groups_;
  StdConv stem_conv_;
  Norm stem_norm_;
  std::vector<std::vector<Bottleneck>> stages_;
  std::vector<int> stage_channels_;
};

// timm VisionTransformer blocks as MiDaS' forward_flex runs them, plus the readout "project".
class Vit {
 public:
  // prefix: "pretrained.model."; in_channels: the backbone's last stage width.
  Vit(Backend& be, WeightLoader& w, const std::string& prefix, int in_channels, int heads, std::vector<int> hooks);
  // feature [B, Cin, gh, gw] (last backbone stage) -> the hooked blocks' outputs, tokens [B, 1 + gh*gw, C].
  std::vector<Tensor> forward(const Tensor& feature) const;
  int embed_dim() const { return dim_; }
  const std::vector<int>& hooks() const { return hooks_; }

 private:
  struct Block {
    Tensor n1g, n1b, qkv_w, qkv_b, proj_w, proj_b, n2g, n2b, fc1_w, fc1_b, fc2_w, fc2_b;  // qkv: timm's [3C, C]
  };
  Tensor pos_embed(int gh, int gw) const;
  Tensor block(const Tensor& x, const Block& b) const;

  Backend& be_;
  int dim_ = 0, heads_ = 0, grid_ = 0;
  Conv proj_;
  Tensor cls_;       // [1, 1, C]
  Tensor pos_full_;  // [1, 1 + grid*grid, C]
  Tensor pos_tok_;   // [1, 1, C]
  Tensor pos_grid_;  // [1, C, grid, grid]
  std::vector<Block> blocks_;
  std::vector<int> hooks_;
};

// Readout "project" + reassemble (act_postprocess3/4) and the DPT decoder ("scratch").
class Scratch {
 public:
  // vit_dim: ViT width; in_channels: widths of layer_1 and layer_2 (backbone stages 0 and 1).
  Scratch(Backend& be, WeightLoader& w, int vit_dim, int layer1_channels, int layer2_channels);
  // tokens [B, 1 + gh*gw, C] of a hooked block -> reassembled map (k = 3: [B, F3, gh, gw];
  // k = 4: [B, F4, gh/2, gw/2]).
  Tensor reassemble(int k, const Tensor& tokens, int gh, int gw) const;
  // layers: the four reassembled features -> depth [N, 1, H, W] (H = 4 x layer_1's height).
  Tensor decode(const std::vector<Tensor>& layers) const;

 private:
  struct Readout {
    Tensor w_tok, w_cls, b;  // Linear(2C -> C) split into its token and cls halves
  };
  struct Rcu {
    Conv conv1, conv2;
  };
  struct Fusion {
    Rcu rcu1, rcu2;
    bool has_rcu1 = false;
    Conv out_conv;
  };
  Readout load_readout(WeightLoader& w, const std::string& name) const;
  Tensor rcu(const Tensor& x, const Rcu& r) const;
  Tensor fusion(const Fusion& f, const Tensor& x0, const Tensor* skip, int out_h, int out_w) const;

  Backend& be_;
  int dim_;
  Readout readout3_, readout4_;
  Conv post3_, post4_, post4_down_;
  Conv layer_rn_[4];
  Fusion refine_[4];
  Conv head0_, head2_, head4_;
};

// The whole DPTDepthModel.
class Midas {
 public:
  // config: {"vit_num_heads": n, "groupnorm_groups": g, "vit_hooks": [8, 11]} (defaults: heads =
  // embed_dim / 64, groups 32, hooks [8, 11]). Loads and shape-checks every weight.
  Midas(Backend& be, const Json& config, WeightLoader& weights);

  // images [N, 3, H, W] (H, W multiples of 32) -> depth [N, H, W]. When `layers` is given it
  // receives the four reassembled features (inputs of scratch.layerk_rn).
  Tensor depth(const Tensor& images, std::vector<Tensor>* layers = nullptr) const;

 private:
  Backend& be_;
  ResNetV2 backbone_;
  Vit vit_;
  Scratch scratch_;
};

}  // namespace l2d::midas
