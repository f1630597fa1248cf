// scratch.cpp: the DPT decoder of the DPT-Hybrid (see midas.h): readout "project" + reassemble of
// the two hooked ViT outputs (act_postprocess3/4), scratch.layerk_rn 3x3 convs (no bias), four
// FeatureFusionBlock_custom (ResidualConvUnit_custom with non-inplace ReLU, bilinear resize with
// align_corners=True, 1x1 out_conv) and the non-negative depth head.
#include "midas.h"

namespace l2d::midas {

Scratch::Readout Scratch::load_readout(WeightLoader& w, const std::string& name) const {
  const int64_t C = dim_;
  const std::vector<float> wt = w.get_host(name + ".weight", {C, 2 * C});
  std::vector<float> tok(size_t(C * C)), cls(size_t(C * C));
  for (int64_t o = 0; o < C; ++o)
    for (int64_t i = 0; i < C; ++i) {
      tok[size_t(o * C + i)] = wt[size_t(o * 2 * C + i)];  // features = cat(tokens, readout), dim -1
      cls[size_t(o * C + i)] = wt[size_t(o * 2 * C + C + i)];
    }
  Readout r;
  r.w_tok = be_.from_host(HostTensor::from_f32({C, C}, tok.data()));
  r.w_cls = be_.from_host(HostTensor::from_f32({C, C}, cls.data()));
  r.b = w.get(name + ".bias", {C});
  return r;
}

Scratch::Scratch(Backend& be, WeightLoader& w, int vit_dim, int layer1_channels, int layer2_channels)
    : be_(be), dim_(vit_dim) {
  const std::string pre = "pretrained.";
  readout3_ = load_readout(w, pre + "act_postprocess3.0.project.0");
  readout4_ = load_readout(w, pre + "act_postprocess4.0.project.0");
  post3_ = load_conv(w, pre + "act_postprocess3.3", -1, dim_, 1, true, 1, 0);
  post4_ = load_conv(w, pre + "act_postprocess4.3", -1, dim_, 1, true, 1, 0);
  const int f4 = int(post4_.w.dim(0));
  post4_down_ = load_conv(w, pre + "act_postprocess4.4", f4, f4, 3, true, 2, 1);
  const int in_ch[4] = {layer1_channels, layer2_channels, int(post3_.w.dim(0)), f4};
  layer_rn_[0] = load_conv(w, "scratch.layer1_rn", -1, in_ch[0], 3, false, 1, 1);
  const int F = int(layer_rn_[0].w.dim(0));
  for (int i = 1; i < 4; ++i)
    layer_rn_[i] = load_conv(w, "scratch.layer" + std::to_string(i + 1) + "_rn", F, in_ch[i], 3, false, 1, 1);
  for (int i = 0; i < 4; ++i) {
    const std::string rp = "scratch.refinenet" + std::to_string(i + 1) + ".";
    Fusion& f = refine_[i];
    // refinenet4 is called with one input: its resConfUnit1 exists in the state dict but is unused.
    f.has_rcu1 = i < 3;
    if (f.has_rcu1) {
      f.rcu1.conv1 = load_conv(w, rp + "resConfUnit1.conv1", F, F, 3, true, 1, 1);
      f.rcu1.conv2 = load_conv(w, rp + "resConfUnit1.conv2", F, F, 3, true, 1, 1);
    }
    f.rcu2.conv1 = load_conv(w, rp + "resConfUnit2.conv1", F, F, 3, true, 1, 1);
    f.rcu2.conv2 = load_conv(w, rp + "resConfUnit2.conv2", F, F, 3, true, 1, 1);
    f.out_conv = load_conv(w, rp + "out_conv", F, F, 1, true, 1, 0);
  }
  head0_ = load_conv(w, "scratch.output_conv.0", -1, F, 3, true, 1, 1);
  head2_ = load_conv(w, "scratch.output_conv.2", -1, int(head0_.w.dim(0)), 3, true, 1, 1);
  head4_ = load_conv(w, "scratch.output_conv.4", 1, int(head2_.w.dim(0)), 1, true, 1, 0);
}

Tensor Scratch::reassemble(int k, const Tensor& tokens, int gh, int gw) const {
  L2D_ASSERT(k == 3 || k == 4);
  const int64_t B = tokens.dim(0), L = tokens.dim(1);
  L2D_ASSERT(L == 1 + int64_t(gh) * gw);
  const Readout& r = k == 3 ? readout3_ : readout4_;
  // ProjectReadout: GELU(Linear(cat(tokens, cls expanded))) = GELU(W_tok t + W_cls cls + b), then
  // Transpose(1, 2) + Unflatten. linear_to_image writes W_tok t + b as the image [B, dim, gh, gw]
  // (no permute pass; GELU is elementwise, so it commutes with the transpose), then the per-image
  // W_cls cls is added broadcast over the pixels: the same sums in the same order as before.
  const Tensor t = be_.slice(tokens, 1, 1, L), cls = be_.slice(tokens, 1, 0, 1);
  Tensor y = be_.linear_to_image(t, r.w_tok, &r.b, nullptr, gh, gw);
  y = be_.binary(y, be_.linear(cls, r.w_cls, nullptr).reshape({B, dim_, 1, 1}), Binary::Add);
  y = be_.unary(y, Unary::GeluErf);
  if (k == 3) return conv(be_, y, post3_);
  return conv(be_, conv(be_, y, post4_), post4_down_);
}

Tensor Scratch::rcu(const Tensor& x, const Rcu& r) const {
  Tensor h = conv(be_, be_.unary(x, Unary::Relu), r.conv1);
  h = conv(be_, be_.unary(h, Unary::Relu), r.conv2);
  return be_.binary(h, x, Binary::Add);
}

Tensor Scratch::fusion(const Fusion& f, const Tensor& x0, const Tensor* skip, int out_h, int out_w) const {
  Tensor h = x0;
  if (skip) h = be_.binary(h, rcu(*skip, f.rcu1), Binary::Add);
  h = rcu(h, f.rcu2);
  h = be_.resize_bilinear(h, out_h, out_w, true);
  return conv(be_, h, f.out_conv);
}

Tensor Scratch::decode(const std::vector<Tensor>& layers) const {
  L2D_ASSERT(layers.size() == 4);
  Tensor rn[4];
  for (int i = 0; i < 4; ++i) rn[i] = conv(be_, layers[size_t(i)], layer_rn_[i]);
  auto h_of = [](const Tensor& t) { return int(t.dim(2)); };
  auto w_of = [](const Tensor& t) { return int(t.dim(3)); };
  Tensor path = fusion(refine_[3], rn[3], nullptr, h_of(rn[2]), w_of(rn[2]));
  path = fusion(refine_[2], path, &rn[2], h_of(rn[1]), w_of(rn[1]));
  path = fusion(refine_[1], path, &rn[1], h_of(rn[0]), w_of(rn[0]));
  path = fusion(refine_[0], path, &rn[0], 2 * h_of(rn[0]), 2 * w_of(rn[0]));
  Tensor h = conv(be_, path, head0_);
  h = be_.resize_bilinear(h, 2 * h_of(h), 2 * w_of(h), true);  // Interpolate(scale_factor=2, align_corners=True)
  h = be_.unary(conv(be_, h, head2_), Unary::Relu);
  return be_.unary(conv(be_, h, head4_), Unary::Relu);  // non_negative
}

}  // namespace l2d::midas
