// unet_config.h: the Live2Diff 3-D UNet configuration, read from the diffusers `unet/config.json`
// object plus Live2Diff's `unet_additional_kwargs` (model config JSON {"unet": ..., "motion": ...}).
// Every size comes from there; options the original supports but this port does not (class
// embeddings, scale-shift time embedding, non-inflated group norms, ...) are refused with
// L2D_ERR_UNSUPPORTED naming the option instead of being silently ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../../core/json.h"

namespace l2d::unet {

struct MotionConfig {
  bool enabled = true;              // use_motion_module
  std::vector<int64_t> resolutions;  // motion_module_resolutions (1, 2, 4, 8 = 2^level)
  bool mid_block = false;           // motion_module_mid_block
  bool decoder_only = false;        // motion_module_decoder_only
  int heads = 8;                    // num_attention_heads
  int transformer_blocks = 1;       // num_transformer_block
  int attention_blocks = 2;         // len(attention_block_types), all "Temporal_Self"
  int dim_div = 1;                  // temporal_attention_dim_div
  int max_len = 24;                 // temporal_position_encoding_max_len
  int window = 16;                  // attention_kwargs.window_size
  int sink = 8;                     // attention_kwargs.sink_size
  int norm_groups = 32;             // TemporalTransformer3DModel GroupNorm (fixed in the original)

  bool at_resolution(int level) const;
};

struct UnetConfig {
  int in_channels = 4, out_channels = 4;
  std::vector<int64_t> block_out_channels;
  std::vector<bool> down_has_attention;  // CrossAttnDownBlock2D vs DownBlock2D
  std::vector<bool> up_has_attention;    // CrossAttnUpBlock2D vs UpBlock2D
  std::vector<int64_t> attention_heads;  // attention_head_dim (diffusers: number of heads), per down block
  int layers_per_block = 2;
  int norm_groups = 32;
  float norm_eps = 1e-5f;
  int cross_attention_dim = 768;
  bool flip_sin_to_cos = true;
  float freq_shift = 0.f;
  int downsample_padding = 1;
  float mid_block_scale_factor = 1.f;
  bool use_linear_projection = false;
  bool center_input_sample = false;
  bool cond_mapping = true;  // flow_conv_in (depth mapping network)
  MotionConfig motion;

  int levels() const { return int(block_out_channels.size()); }
  int time_embed_dim() const { return int(block_out_channels[0] * 4); }
};

// Parses {"unet": <diffusers config>, "motion": <unet_additional_kwargs>}; throws L2D_ERR_FORMAT or
// L2D_ERR_UNSUPPORTED naming the offending key.
UnetConfig parse_unet_config(const Json& config);

}  // namespace l2d::unet
