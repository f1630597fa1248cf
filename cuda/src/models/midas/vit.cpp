// vit.cpp: the ViT part of the DPT-Hybrid as MiDaS' forward_flex runs it (see midas.h): HybridEmbed
// 1x1 projection of the last backbone stage, cls token, position embeddings resized to the token
// grid, pre-LN transformer blocks; only the hooked blocks' outputs are used (the final norm and the
// classifier head are not part of the depth path).
#include <algorithm>
#include <cmath>

#include "midas.h"

namespace l2d::midas {

namespace {
constexpr float kLayerNormEps = 1e-6f;
}

Vit::Vit(Backend& be, WeightLoader& w, const std::string& prefix, int in_channels, int heads, std::vector<int> hooks)
    : be_(be), heads_(heads), hooks_(std::move(hooks)) {
  const Shape& cs = w.shape_of(prefix + "cls_token");
  if (cs.size() != 3 || cs[0] != 1 || cs[1] != 1)
    fail(L2D_ERR_FORMAT, "midas weight \"", prefix, "cls_token\" has shape ", shape_str(cs), ", expected [1, 1, C]");
  dim_ = int(cs[2]);
  const int64_t C = dim_;
  if (heads_ < 1 || C % heads_ != 0)
    fail(L2D_ERR_FORMAT, "midas config: vit_num_heads ", heads_, " does not divide the embed dim ", C);
  cls_ = w.get(prefix + "cls_token", {1, 1, C});
  proj_ = load_conv(w, prefix + "patch_embed.proj", dim_, in_channels, 1, true, 1, 0);

  // Position embeddings: [1, 1 + g*g, C]; the grid part is also kept as an image for resizing.
  const Shape& ps = w.shape_of(prefix + "pos_embed");
  if (ps.size() != 3 || ps[0] != 1 || ps[2] != C)
    fail(L2D_ERR_FORMAT, "midas weight \"", prefix, "pos_embed\" has shape ", shape_str(ps), ", expected [1, L, ", C, "]");
  grid_ = int(std::lround(std::sqrt(double(ps[1] - 1))));
  if (int64_t(grid_) * grid_ + 1 != ps[1])
    fail(L2D_ERR_FORMAT, "midas weight \"", prefix, "pos_embed\" has ", ps[1], " positions, expected 1 + a square");
  const std::vector<float> pos = w.get_host(prefix + "pos_embed", ps);
  pos_full_ = be_.from_host(HostTensor::from_f32(ps, pos.data()));
  pos_tok_ = be_.from_host(HostTensor::from_f32({1, 1, C}, pos.data()));
  const int64_t G = int64_t(grid_) * grid_;
  std::vector<float> grid(size_t(G * C));
  for (int64_t p = 0; p < G; ++p)
    for (int64_t c = 0; c < C; ++c) grid[size_t(c * G + p)] = pos[size_t((1 + p) * C + c)];
  pos_grid_ = be_.from_host(HostTensor::from_f32({1, C, grid_, grid_}, grid.data()));

  for (int i = 0;; ++i) {
    const std::string bp = prefix + "blocks." + std::to_string(i) + ".";
    if (!w.has(bp + "norm1.weight")) break;
    Block b;
    b.n1g = w.get(bp + "norm1.weight", {C});
    b.n1b = w.get(bp + "norm1.bias", {C});
    // qkv Linear(C -> 3C), rows [q; k; v], each split by heads: one GEMM, and self_attention
    // reads the three column blocks of its output.
    b.qkv_w = w.get(bp + "attn.qkv.weight", {3 * C, C});
    b.qkv_b = w.get(bp + "attn.qkv.bias", {3 * C});
    b.proj_w = w.get(bp + "attn.proj.weight", {C, C});
    b.proj_b = w.get(bp + "attn.proj.bias", {C});
    b.n2g = w.get(bp + "norm2.weight", {C});
    b.n2b = w.get(bp + "norm2.bias", {C});
    const Shape& f1 = w.shape_of(bp + "mlp.fc1.weight");
    const int64_t hidden = f1.empty() ? 0 : f1[0];
    b.fc1_w = w.get(bp + "mlp.fc1.weight", {hidden, C});
    b.fc1_b = w.get(bp + "mlp.fc1.bias", {hidden});
    b.fc2_w = w.get(bp + "mlp.fc2.weight", {C, hidden});
    b.fc2_b = w.get(bp + "mlp.fc2.bias", {C});
    blocks_.push_back(std::move(b));
  }
  if (blocks_.empty()) fail(L2D_ERR_NOT_FOUND, "midas model: missing weight \"", prefix, "blocks.0.norm1.weight\"");
  for (int h : hooks_)
    if (h < 0 || h >= int(blocks_.size()))
      fail(L2D_ERR_FORMAT, "midas config: vit hook ", h, " is outside the ", blocks_.size(), " transformer blocks");
}

// _resize_pos_embed: the grid part resized bilinearly (align_corners=False) to gh x gw.
Tensor Vit::pos_embed(int gh, int gw) const {
  if (gh == grid_ && gw == grid_) return pos_full_;
  Tensor g = be_.resize_bilinear(pos_grid_, gh, gw, false);                   // [1, C, gh, gw]
  g = be_.permute(g.reshape({1, dim_, int64_t(gh) * gw}), {0, 2, 1});        // [1, gh*gw, C]
  return be_.concat({pos_tok_, g}, 1);
}

Tensor Vit::block(const Tensor& x, const Block& b) const {
  Tensor h = be_.layer_norm(x, b.n1g, b.n1b, kLayerNormEps);
  h = be_.linear(be_.self_attention(be_.linear(h, b.qkv_w, &b.qkv_b), heads_, AttnMask::None), b.proj_w, &b.proj_b);
  const Tensor x1 = be_.binary(x, h, Binary::Add);
  h = be_.layer_norm(x1, b.n2g, b.n2b, kLayerNormEps);
  h = be_.unary(be_.linear(h, b.fc1_w, &b.fc1_b), Unary::GeluErf);
  h = be_.linear(h, b.fc2_w, &b.fc2_b);
  return be_.binary(x1, h, Binary::Add);
}

std::vector<Tensor> Vit::forward(const Tensor& feature) const {
  const int64_t B = feature.dim(0);
  const int gh = int(feature.dim(2)), gw = int(feature.dim(3));
  Tensor x = conv(be_, feature, proj_);                                          // [B, C, gh, gw]
  x = be_.permute(x.reshape({B, dim_, int64_t(gh) * gw}), {0, 2, 1});            // [B, gh*gw, C]
  std::vector<Tensor> parts(size_t(B), cls_);
  const Tensor cls = B == 1 ? cls_ : be_.concat(parts, 0);                       // cls_token.expand(B, -1, -1)
  x = be_.binary(be_.concat({cls, x}, 1), pos_embed(gh, gw), Binary::Add);
  int last = 0;
  for (int h : hooks_) last = std::max(last, h);
  std::vector<Tensor> hooked(hooks_.size());
  for (int i = 0; i <= last; ++i) {
    x = block(x, blocks_[size_t(i)]);
    for (size_t j = 0; j < hooks_.size(); ++j)
      if (hooks_[j] == i) hooked[j] = x;
  }
  return hooked;
}

}  // namespace l2d::midas
