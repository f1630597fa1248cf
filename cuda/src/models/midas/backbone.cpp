// backbone.cpp: the ResNetV2 of the DPT-Hybrid (timm 0.6.7 vit_base_r50_s16_384 backbone, see
// midas.h): weight-standardised convs with TF "SAME" padding, GroupNorm(+ReLU), non-preact
// Bottleneck blocks whose first block has a DownsampleConv (StdConv 1x1 + GroupNorm, no act).
#include <algorithm>
#include <cmath>

#include "midas.h"

namespace l2d::midas {

namespace {

constexpr float kStdConvEps = 1e-8f;    // timm _resnetv2: partial(StdConv2dSame, eps=1e-8)
constexpr float kGroupNormEps = 1e-5f;  // GroupNormAct default

// TF "SAME" padding of one dimension (timm pad_same): total = max((ceil(i/s)-1)*s + k - i, 0),
// the smaller half before.
void same_pad(int64_t in, int k, int s, int& before, int& after) {
  const int64_t out = (in + s - 1) / s;
  const int64_t total = std::max<int64_t>((out - 1) * s + k - in, 0);
  before = int(total / 2);
  after = int(total - total / 2);
}

Conv2dParams same_params(const Tensor& x, int k, int stride) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  same_pad(x.dim(2), k, stride, p.pad_top, p.pad_bottom);
  same_pad(x.dim(3), k, stride, p.pad_left, p.pad_right);
  return p;
}

}  // namespace

Conv load_conv(WeightLoader& w, const std::string& name, int out, int in, int k, bool bias, int stride, int pad) {
  const Shape& s = w.shape_of(name + ".weight");
  if (s.size() != 4)
    fail(L2D_ERR_FORMAT, "midas weight \"", name, ".weight\" has shape ", shape_str(s), ", expected a 4-D conv weight");
  const Shape want{out >= 0 ? out : s[0], in >= 0 ? in : s[1], k >= 0 ? k : s[2], k >= 0 ? k : s[3]};
  Conv c;
  c.w = w.get(name + ".weight", want);
  if (bias) c.b = w.get(name + ".bias", {want[0]});
  c.stride = stride;
  c.pad = pad;
  return c;
}

Tensor conv(Backend& be, const Tensor& x, const Conv& c) {
  return be.conv2d(x, c.w, c.b.defined() ? &c.b : nullptr, Conv2dParams::same_pad(c.stride, c.pad));
}

ResNetV2::StdConv ResNetV2::load_std_conv(WeightLoader& w, const std::string& name, int out, int in, int k,
                                          int stride) const {
  const Shape& s = w.shape_of(name);
  const Shape shape{out >= 0 ? out : (s.empty() ? 0 : s[0]), in, k, k};
  std::vector<float> v = w.get_host(name, shape);
  // F.batch_norm(w.reshape(1, O, -1), training=True, eps): per output channel, biased variance.
  const int64_t per = int64_t(in) * k * k;
  for (int64_t o = 0; o < shape[0]; ++o) {
    float* row = v.data() + o * per;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < per; ++i) mean += row[i];
    mean /= double(per);
    for (int64_t i = 0; i < per; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= double(per);
    const double inv = 1.0 / std::sqrt(var + double(kStdConvEps));
    for (int64_t i = 0; i < per; ++i) row[i] = float((row[i] - mean) * inv);
  }
  StdConv c;
  c.w = be_.from_host(HostTensor::from_f32(shape, v.data()));
  c.k = k;
  c.stride = stride;
  return c;
}

ResNetV2::Norm ResNetV2::load_norm(WeightLoader& w, const std::string& name, int channels) const {
  if (channels % groups_ != 0)
    fail(L2D_ERR_FORMAT, "midas: GroupNorm \"", name, "\" has ", channels, " channels, not a multiple of ", groups_,
         " groups (set \"groupnorm_groups\" in the config)");
  return Norm{w.get(name + ".weight", {channels}), w.get(name + ".bias", {channels})};
}

ResNetV2::ResNetV2(Backend& be, WeightLoader& w, const std::string& prefix, int groups) : be_(be), groups_(groups) {
  if (groups < 1) fail(L2D_ERR_FORMAT, "midas config: groupnorm_groups must be >= 1");
  const std::string stem = prefix + "stem.";
  const Shape& ss = w.shape_of(stem + "conv.weight");
  if (ss.size() != 4 || ss[2] != ss[3])
    fail(L2D_ERR_FORMAT, "midas weight \"", stem, "conv.weight\" has shape ", shape_str(ss), ", expected [O, 3, k, k]");
  stem_conv_ = load_std_conv(w, stem + "conv.weight", -1, int(ss[1]), int(ss[2]), 2);
  int prev = int(ss[0]);
  stem_norm_ = load_norm(w, stem + "norm", prev);
  for (int s = 0;; ++s) {
    const std::string sp = prefix + "stages." + std::to_string(s) + ".blocks.";
    if (!w.has(sp + "0.conv1.weight")) break;
    std::vector<Bottleneck> blocks;
    int out = 0;
    for (int b = 0;; ++b) {
      const std::string bp = sp + std::to_string(b) + ".";
      if (!w.has(bp + "conv1.weight")) break;
      const int stride = (b == 0 && s > 0) ? 2 : 1;  // timm ResNetV2: stage 0 stride 1, later stages 2
      Bottleneck blk;
      const int mid = int(w.shape_of(bp + "conv1.weight")[0]);
      out = int(w.shape_of(bp + "conv3.weight")[0]);
      blk.conv1 = load_std_conv(w, bp + "conv1.weight", mid, prev, 1, 1);
      blk.norm1 = load_norm(w, bp + "norm1", mid);
      blk.conv2 = load_std_conv(w, bp + "conv2.weight", mid, mid, 3, stride);
      blk.norm2 = load_norm(w, bp + "norm2", mid);
      blk.conv3 = load_std_conv(w, bp + "conv3.weight", out, mid, 1, 1);
      blk.norm3 = load_norm(w, bp + "norm3", out);
      blk.has_down = w.has(bp + "downsample.conv.weight");
      if (blk.has_down) {
        blk.down = load_std_conv(w, bp + "downsample.conv.weight", out, prev, 1, stride);
        blk.down_norm = load_norm(w, bp + "downsample.norm", out);
      } else if (prev != out || stride != 1) {
        fail(L2D_ERR_NOT_FOUND, "midas model: missing weight \"", bp, "downsample.conv.weight\"");
      }
      blocks.push_back(std::move(blk));
      prev = out;
    }
    stages_.push_back(std::move(blocks));
    stage_channels_.push_back(out);
  }
  if (stages_.empty()) fail(L2D_ERR_NOT_FOUND, "midas model: missing weight \"", prefix, "stages.0.blocks.0.conv1.weight\"");
}

Tensor ResNetV2::std_conv(const Tensor& x, const StdConv& c) const {
  return be_.conv2d(x, c.w, nullptr, same_params(x, c.k, c.stride));
}

Tensor ResNetV2::norm(const Tensor& x, const Norm& n, bool relu) const {
  Tensor y = be_.group_norm(x, groups_, n.gamma, n.beta, kGroupNormEps, false);
  return relu ? be_.unary(y, Unary::Relu) : y;
}

Tensor ResNetV2::bottleneck(const Tensor& x, const Bottleneck& b) const {
  const Tensor shortcut = b.has_down ? norm(std_conv(x, b.down), b.down_norm, false) : x;
  Tensor h = norm(std_conv(x, b.conv1), b.norm1, true);
  h = norm(std_conv(h, b.conv2), b.norm2, true);
  h = norm(std_conv(h, b.conv3), b.norm3, false);
  return be_.unary(be_.binary(h, shortcut, Binary::Add), Unary::Relu);
}

std::vector<Tensor> ResNetV2::forward(const Tensor& x) const {
  Tensor h = norm(std_conv(x, stem_conv_), stem_norm_, true);
  h = be_.max_pool2d(h, 3, same_params(h, 3, 2));  // MaxPool2dSame: -inf padding
  std::vector<Tensor> outs;
  for (const auto& stage : stages_) {
    for (const auto& blk : stage) h = bottleneck(h, blk);
    outs.push_back(h);
  }
  return outs;
}

}  // namespace l2d::midas
