// taesd.h: TAESD (diffusers AutoencoderTiny) on the Backend interface. The Taesd class works on
// backend tensors so the pipeline can encode/decode without host round trips; the "taesd" model
// kind (taesd.cpp) wraps it for the tensor-map ABI.
//
// Architecture (diffusers EncoderTiny / DecoderTiny / AutoencoderTinyBlock, weight names
// "encoder.layers.<i>..." / "decoder.layers.<i>..." as in a diffusers TAESD folder):
//   block(x)  = relu(conv3(relu(conv2(relu(conv1(x))))) + skip(x)), convs 3x3 pad 1 with bias,
//               skip = 1x1 conv without bias when channels change, else identity;
//   encoder   = conv(in -> c0) + blocks, then per later stage [conv stride 2 no bias, blocks...],
//               final conv -> latent channels; input (x + 1) / 2 (maps [-1,1] to [0,1]);
//   decoder   = tanh(z / 3) * 3, conv(latent -> c0), relu, per stage [blocks..., (not last stage:
//               nearest upsample x2), conv no bias (last stage: conv -> out channels WITH bias)];
//               output 2 y - 1, not clamped.
#pragma once

#include <vector>

#include "../../core/backend.h"
#include "../../core/json.h"
#include "../weights.h"

namespace l2d {

class Taesd {
 public:
  // config: the diffusers AutoencoderTiny config.json object. Loads (and shape-checks) every weight.
  Taesd(Backend& be, const Json& config, WeightLoader& weights);

  // images [N, in_channels, H, W] in [-1, 1], H and W multiples of the downsampling factor
  // -> latents [N, latent_channels, H / f, W / f] (no scaling_factor applied).
  Tensor encode(const Tensor& images) const;
  // latents [N, latent_channels, h, w] -> images [N, out_channels, h * f, w * f], 2 y - 1, unclamped.
  Tensor decode(const Tensor& latents) const;

  // Spatial factor between image and latent (8 for the default config).
  int downsampling_factor() const { return factor_; }
  int in_channels() const { return in_channels_; }
  int latent_channels() const { return latent_channels_; }
  int out_channels() const { return out_channels_; }

 private:
  struct Conv {
    Tensor w, b;  // b undefined when the conv has no bias
    int stride = 1;
  };
  struct Block {
    Conv c1, c2, c3;
    Tensor skip;  // [out, in, 1, 1] or undefined (identity)
  };
  // One entry of a layer list: exactly one of conv / block / upsample is used.
  struct Layer {
    enum class Kind { Conv, ConvRelu, Block, Upsample } kind;
    Conv conv;
    Block block;
  };

  Tensor conv(const Tensor& x, const Conv& c) const;
  Tensor block(const Tensor& x, const Block& b) const;
  Tensor run_layers(Tensor x, const std::vector<Layer>& layers) const;

  Backend& be_;
  int in_channels_ = 3, out_channels_ = 3, latent_channels_ = 4, factor_ = 1, upscale_ = 2;
  std::vector<Layer> encoder_, decoder_;
  Tensor three_;  // [1] = 3.0: tanh(z / 3) * 3 divides exactly like PyTorch
};

}  // namespace l2d
