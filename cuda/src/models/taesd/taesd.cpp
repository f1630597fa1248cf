// taesd.cpp: TAESD encoder/decoder (see taesd.h) and the "taesd" model kind.
//   config = diffusers AutoencoderTiny config.json; weights = its safetensors (diffusers names).
//   method "encode": io "images" F32 [N, 3, H, W] in [-1, 1] -> "latents" [N, 4, H/8, W/8]
//   method "decode": io "latents" [N, 4, h, w] -> "images" [N, 3, 8h, 8w] (2 y - 1, unclamped)
#include "taesd.h"

#include <string>

#include "../../core/config.h"
#include "../model.h"

namespace l2d {

namespace {

// Config bounds: real TAESD has 64-channel blocks, 3 blocks per stage, 4 stages, factor 2; the
// limits keep 2^stages and upscale^stages far from int overflow (a factor of 0 would divide by zero).
constexpr int64_t kMaxChannels = 16384;
constexpr size_t kMaxStages = 8;
constexpr int64_t kMaxBlocks = 64;

std::vector<int> int_list(const ConfigReader& c, const char* key, int64_t lo, int64_t hi) {
  std::vector<int> out;
  for (int64_t v : c.integers(key, 1, kMaxStages, lo, hi)) out.push_back(int(v));
  return out;
}

}  // namespace

Taesd::Taesd(Backend& be, const Json& config, WeightLoader& w) : be_(be) {
  const ConfigReader cfg(config, "taesd config");
  const std::string act = cfg.string("act_fn", "relu");
  if (act != "relu") fail(L2D_ERR_UNSUPPORTED, "taesd: act_fn \"", act, "\" is not supported (only \"relu\")");
  const std::string up = cfg.string("upsample_fn", "nearest");
  if (up != "nearest") fail(L2D_ERR_UNSUPPORTED, "taesd: upsample_fn \"", up, "\" is not supported (only \"nearest\")");
  in_channels_ = int(cfg.integer("in_channels", 3, 1, 1024));
  out_channels_ = int(cfg.integer("out_channels", 3, 1, 1024));
  latent_channels_ = int(cfg.integer("latent_channels", 4, 1, 1024));
  upscale_ = int(cfg.integer("upsampling_scaling_factor", 2, 1, 8));
  const std::vector<int> enc_ch = int_list(cfg, "encoder_block_out_channels", 1, kMaxChannels);
  const std::vector<int> dec_ch = int_list(cfg, "decoder_block_out_channels", 1, kMaxChannels);
  const std::vector<int> enc_n = int_list(cfg, "num_encoder_blocks", 0, kMaxBlocks);
  const std::vector<int> dec_n = int_list(cfg, "num_decoder_blocks", 0, kMaxBlocks);
  if (enc_ch.size() != enc_n.size())
    fail(L2D_ERR_FORMAT, "taesd config: encoder_block_out_channels and num_encoder_blocks must have the same length");
  if (dec_ch.size() != dec_n.size())
    fail(L2D_ERR_FORMAT, "taesd config: decoder_block_out_channels and num_decoder_blocks must have the same length");

  auto load_conv = [&](const std::string& name, int out, int in, int k, bool bias, int stride) {
    Conv c;
    c.w = w.get(name + ".weight", {out, in, k, k});
    if (bias) c.b = w.get(name + ".bias", {out});
    c.stride = stride;
    return c;
  };
  auto load_block = [&](const std::string& name, int in, int out) {
    Block b;
    b.c1 = load_conv(name + ".conv.0", out, in, 3, true, 1);
    b.c2 = load_conv(name + ".conv.2", out, out, 3, true, 1);
    b.c3 = load_conv(name + ".conv.4", out, out, 3, true, 1);
    if (in != out) b.skip = w.get(name + ".skip.weight", {out, in, 1, 1});
    return b;
  };
  auto conv_layer = [](Conv c, Layer::Kind kind = Layer::Kind::Conv) {
    Layer l{kind, std::move(c), {}};
    return l;
  };
  auto block_layer = [](Block b) {
    Layer l{Layer::Kind::Block, {}, std::move(b)};
    return l;
  };

  // Encoder: the layer index counts every nn.Sequential entry.
  int idx = 0, ch = in_channels_;
  factor_ = 1;
  for (size_t i = 0; i < enc_ch.size(); ++i) {
    const std::string name = "encoder.layers." + std::to_string(idx++);
    if (i == 0) {
      encoder_.push_back(conv_layer(load_conv(name, enc_ch[i], ch, 3, true, 1)));
    } else {
      encoder_.push_back(conv_layer(load_conv(name, enc_ch[i], ch, 3, false, 2)));
      factor_ *= 2;
    }
    ch = enc_ch[i];
    for (int j = 0; j < enc_n[i]; ++j)
      encoder_.push_back(block_layer(load_block("encoder.layers." + std::to_string(idx++), ch, ch)));
  }
  encoder_.push_back(conv_layer(load_conv("encoder.layers." + std::to_string(idx++), latent_channels_, ch, 3, true, 1)));

  // Decoder: conv, relu, then per stage blocks, upsample (not last), conv (bias only on the last).
  idx = 0;
  decoder_.push_back(conv_layer(load_conv("decoder.layers.0", dec_ch[0], latent_channels_, 3, true, 1),
                                Layer::Kind::ConvRelu));
  idx = 2;  // layers.1 is the ReLU
  ch = dec_ch[0];
  int dec_factor = 1;
  for (size_t i = 0; i < dec_ch.size(); ++i) {
    const bool last = i + 1 == dec_ch.size();
    for (int j = 0; j < dec_n[i]; ++j) {
      decoder_.push_back(block_layer(load_block("decoder.layers." + std::to_string(idx++), ch, dec_ch[i])));
      ch = dec_ch[i];
    }
    if (!last) {
      decoder_.push_back(Layer{Layer::Kind::Upsample, {}, {}});
      dec_factor *= upscale_;
      ++idx;
    }
    const int out = last ? out_channels_ : dec_ch[i];
    decoder_.push_back(conv_layer(load_conv("decoder.layers." + std::to_string(idx++), out, dec_ch[i], 3, last, 1)));
    ch = out;
  }
  if (dec_factor != factor_)
    fail(L2D_ERR_FORMAT, "taesd config: the decoder upsamples by ", dec_factor, " but the encoder downsamples by ", factor_);

  HostTensor three;
  const float v = 3.f;
  three = HostTensor::from_f32({1}, &v);
  three_ = be_.from_host(three);
}

Tensor Taesd::conv(const Tensor& x, const Conv& c) const {
  return be_.conv2d(x, c.w, c.b.defined() ? &c.b : nullptr, Conv2dParams::same_pad(c.stride, int(c.w.dim(2) / 2)));
}

// relu(conv.4(h) + skip): the skip rides in the last convolution's epilogue (conv2d_fused), which
// saves the separate Add's pass over the block output.
Tensor Taesd::block(const Tensor& x, const Block& b) const {
  Tensor h = be_.unary(conv(x, b.c1), Unary::Relu);
  h = be_.unary(conv(h, b.c2), Unary::Relu);
  const Tensor skip = b.skip.defined() ? be_.conv2d(x, b.skip, nullptr, Conv2dParams{}) : x;
  h = be_.conv2d_fused(h, b.c3.w, b.c3.b.defined() ? &b.c3.b : nullptr, nullptr, &skip,
                       Conv2dParams::same_pad(b.c3.stride, int(b.c3.w.dim(2) / 2)));
  return be_.unary(h, Unary::Relu);
}

Tensor Taesd::run_layers(Tensor x, const std::vector<Layer>& layers) const {
  for (const Layer& l : layers) {
    switch (l.kind) {
      case Layer::Kind::Conv: x = conv(x, l.conv); break;
      case Layer::Kind::ConvRelu: x = be_.unary(conv(x, l.conv), Unary::Relu); break;
      case Layer::Kind::Block: x = block(x, l.block); break;
      case Layer::Kind::Upsample: x = be_.upsample_nearest(x, int(x.dim(2)) * upscale_, int(x.dim(3)) * upscale_); break;
    }
  }
  return x;
}

Tensor Taesd::encode(const Tensor& images) const {
  if (images.ndim() != 4 || images.dim(1) != in_channels_)
    fail(L2D_ERR_INVALID_ARGUMENT, "taesd encode: images must be [N, ", in_channels_, ", H, W], got ",
         shape_str(images.shape()));
  if (images.dim(0) < 1 || images.dim(2) < 1 || images.dim(3) < 1 || images.dim(2) % factor_ != 0 ||
      images.dim(3) % factor_ != 0)
    fail(L2D_ERR_INVALID_ARGUMENT, "taesd encode: image height and width must be positive multiples of ", factor_,
         ", got ", shape_str(images.shape()));
  // (x + 1) / 2 == 0.5 x + 0.5 exactly in float (scaling by a power of two is exact).
  return run_layers(be_.unary(images, Unary::Affine, 0.5f, 0.5f), encoder_);
}

Tensor Taesd::decode(const Tensor& latents) const {
  if (latents.ndim() != 4 || latents.dim(1) != latent_channels_ || latents.dim(0) < 1 || latents.dim(2) < 1 ||
      latents.dim(3) < 1)
    fail(L2D_ERR_INVALID_ARGUMENT, "taesd decode: latents must be [N, ", latent_channels_, ", h, w], got ",
         shape_str(latents.shape()));
  Tensor z = be_.unary(be_.unary(be_.binary(latents, three_, Binary::Div), Unary::Tanh), Unary::Affine, 3.f, 0.f);
  return be_.unary(run_layers(z, decoder_), Unary::Affine, 2.f, -1.f);
}

namespace {

class TaesdModel final : public Model {
 public:
  TaesdModel(Backend& be, const Json& config, const TensorMap& weights) : be_(be), net_(make(be, config, weights)) {}

  void run(const std::string& method, TensorMap& io) override {
    if (method == "encode") {
      const HostTensor& images = io.at("images", "taesd encode");
      require_float(images, "images");
      io.put("latents", be_.to_host(net_.encode(be_.from_host(images))));
    } else if (method == "decode") {
      const HostTensor& latents = io.at("latents", "taesd decode");
      require_float(latents, "latents");
      io.put("images", be_.to_host(net_.decode(be_.from_host(latents))));
    } else {
      unknown_method("taesd", method);
    }
  }
  const void* component(const std::type_info& type) const override { return type == typeid(Taesd) ? &net_ : nullptr; }

 private:
  static Taesd make(Backend& be, const Json& config, const TensorMap& weights) {
    WeightLoader w(be, weights, "taesd");
    Taesd net(be, config, w);
    w.check_all_used();
    return net;
  }
  static void require_float(const HostTensor& t, const char* name) {
    if (t.dtype != L2D_F32 && t.dtype != L2D_F16 && t.dtype != L2D_BF16)
      fail(L2D_ERR_INVALID_ARGUMENT, "taesd: \"", name, "\" must be a float tensor, got ", dtype_name(t.dtype));
  }

  Backend& be_;
  Taesd net_;
};

const ModelRegistrar kRegistrar("taesd", [](Backend& be, const Json& config, const TensorMap& weights) {
  return std::unique_ptr<Model>(new TaesdModel(be, config, weights));
});

}  // namespace
}  // namespace l2d
