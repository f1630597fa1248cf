#include "unet_config.h"

#include <algorithm>

#include "../../core/config.h"
#include "../../core/error.h"

namespace l2d::unet {

bool MotionConfig::at_resolution(int level) const {
  const int64_t res = int64_t(1) << level;
  return std::find(resolutions.begin(), resolutions.end(), res) != resolutions.end();
}

namespace {

// Sizes accepted from a config. Generous for real models (SD1.5: 320..1280 channels, 4 levels,
// 8 heads, max_len 24..32) but small enough that no product of them can overflow or allocate
// absurd memory before the weights are even looked at.
constexpr int64_t kMaxChannels = 16384;
constexpr int64_t kMaxLevels = 8;  // 2^(levels-1) is the latent size multiple
constexpr int64_t kMaxLayers = 16;
constexpr int64_t kMaxPositions = 4096;
// Rough upper bound of the parameters a config implies (resnets, attention, feed-forward per
// layer); a config beyond this cannot be a real checkpoint and is refused with its size.
constexpr double kMaxWeightBytes = 64.0 * kGiB;

void refuse_if(bool cond, const std::string& what) {
  if (cond) fail(L2D_ERR_UNSUPPORTED, "unet config: ", what, " is not supported");
}

std::vector<bool> block_kinds(const ConfigReader& u, const char* key, int n, const char* with, const char* without) {
  std::vector<bool> out;
  for (const std::string& t : u.strings(key, size_t(n), size_t(n))) {
    if (t.rfind(with, 0) == 0) out.push_back(true);
    else if (t.rfind(without, 0) == 0) out.push_back(false);
    else fail(L2D_ERR_UNSUPPORTED, "unet config: ", key, " entry \"", t, "\" is not supported");
  }
  return out;
}

void parse_motion(const ConfigReader& m, UnetConfig& c) {
  c.cond_mapping = m.boolean("cond_mapping", false);
  refuse_if(!m.boolean("use_inflated_groupnorm", false), "use_inflated_groupnorm = false");
  refuse_if(m.boolean("unet_use_cross_frame_attention", false), "unet_use_cross_frame_attention");
  refuse_if(m.boolean("unet_use_temporal_attention", false), "unet_use_temporal_attention");
  MotionConfig& mm = c.motion;
  mm.enabled = m.boolean("use_motion_module", false);
  mm.resolutions = m.has("motion_module_resolutions")
                       ? m.integers("motion_module_resolutions", 0, 16, 1, int64_t(1) << (kMaxLevels - 1))
                       : std::vector<int64_t>{1, 2, 4, 8};
  mm.mid_block = m.boolean("motion_module_mid_block", false);
  mm.decoder_only = m.boolean("motion_module_decoder_only", false);
  if (!mm.enabled) return;
  const std::string type = m.string("motion_module_type", "Streaming");
  refuse_if(type != "Streaming" && type != "Vanilla", "motion_module_type \"" + type + "\"");
  const ConfigReader k = m.object("motion_module_kwargs");
  mm.heads = int(k.integer("num_attention_heads", 8, 1, kMaxChannels));
  mm.transformer_blocks = int(k.integer("num_transformer_block", 2, 1, kMaxLayers));
  if (k.has("attention_block_types")) {
    const auto types = k.strings("attention_block_types", 1, 8);
    for (const std::string& t : types) refuse_if(t != "Temporal_Self", "attention block type \"" + t + "\"");
    mm.attention_blocks = int(types.size());
  }
  mm.dim_div = int(k.integer("temporal_attention_dim_div", 1, 1, kMaxChannels));
  mm.max_len = int(k.integer("temporal_position_encoding_max_len", 32, 1, kMaxPositions));
  refuse_if(!k.string("cross_frame_attention_mode", "").empty(), "cross_frame_attention_mode");
  refuse_if(k.integer("num_3d_conv_layers", 0, 0, 1 << 20) != 0, "num_3d_conv_layers");
  if (k.has("attention_kwargs")) {
    const ConfigReader a = k.object("attention_kwargs");
    mm.window = int(a.integer("window_size", 8, 2, kMaxPositions));
    mm.sink = int(a.integer("sink_size", 0, 0, kMaxPositions));
  }
  if (mm.sink < 1 || mm.window <= mm.sink || mm.window > mm.max_len)
    fail(L2D_ERR_FORMAT, "unet config: attention_kwargs window_size ", mm.window, " / sink_size ", mm.sink,
         " must satisfy 1 <= sink < window <= temporal_position_encoding_max_len (", mm.max_len, ")");
}

// Parameters the config implies, roughly (per layer: two 3x3 convs, self/cross attention and a
// GEGLU feed-forward, a motion module), to refuse absurd configs with their size.
double estimated_weight_bytes(const UnetConfig& c) {
  double params = 0;
  for (int64_t ch : c.block_out_channels) {
    const double C = double(ch);
    const double layer = 18 * C * C + 4 * C * C + 2 * C * double(c.cross_attention_dim) + 12 * C * C +
                         (c.motion.enabled ? double(c.motion.transformer_blocks) * (4 * C * C + 12 * C * C) : 0.0);
    params += double(c.layers_per_block + 1) * 2 * layer;
  }
  return params * 4;  // float32 on the host
}

}  // namespace

UnetConfig parse_unet_config(const Json& config) {
  const ConfigReader root(config, "unet config");
  if (!root.has("unet")) root.error("unet", "is missing (the diffusers unet config object)");
  if (!root.has("motion")) root.error("motion", "is missing (Live2Diff's unet_additional_kwargs object)");
  const ConfigReader u = root.object("unet");
  UnetConfig c;
  c.in_channels = int(u.integer("in_channels", 4, 1, 1024));
  c.out_channels = int(u.integer("out_channels", 4, 1, 1024));
  c.block_out_channels = u.integers("block_out_channels", 1, kMaxLevels, 1, kMaxChannels);
  const int n = c.levels();
  c.layers_per_block = int(u.integer("layers_per_block", 2, 1, kMaxLayers));
  c.norm_groups = int(u.integer("norm_num_groups", 32, 1, kMaxChannels));
  for (int64_t ch : c.block_out_channels) u.require_divisible("block_out_channels", ch, "norm_num_groups", c.norm_groups);
  c.norm_eps = float(u.number("norm_eps", 1e-5, 1e-12, 1.0));
  c.cross_attention_dim = int(u.integer("cross_attention_dim", 1280, 1, kMaxChannels));
  c.flip_sin_to_cos = u.boolean("flip_sin_to_cos", true);
  c.freq_shift = float(u.number("freq_shift", 0, -1e3, 1e3));
  c.downsample_padding = int(u.integer("downsample_padding", 1, 0, 3));
  c.mid_block_scale_factor = float(u.number("mid_block_scale_factor", 1, 1e-6, 1e6));  // a divisor
  c.use_linear_projection = u.boolean("use_linear_projection", false);
  c.center_input_sample = u.boolean("center_input_sample", false);

  // diffusers' attention_head_dim is the number of heads: one value or one per down block.
  if (u.type_of("attention_head_dim") == Json::Type::Array)
    c.attention_heads = u.integers("attention_head_dim", size_t(n), size_t(n), 1, kMaxChannels);
  else
    c.attention_heads.assign(size_t(n), u.integer("attention_head_dim", 8, 1, kMaxChannels));

  c.down_has_attention = block_kinds(u, "down_block_types", n, "CrossAttnDownBlock", "DownBlock");
  c.up_has_attention = block_kinds(u, "up_block_types", n, "CrossAttnUpBlock", "UpBlock");
  // Level l's channels are split into heads by its down block, the mirrored up block and (last
  // level) the mid block.
  for (int l = 0; l < n; ++l) {
    if (c.down_has_attention[size_t(l)] || c.up_has_attention[size_t(n - 1 - l)] || l == n - 1)
      u.require_divisible("block_out_channels", c.block_out_channels[size_t(l)], "attention_head_dim",
                          c.attention_heads[size_t(l)]);
  }
  refuse_if(u.string("act_fn", "silu") != "silu", "act_fn other than silu");
  refuse_if(u.string("mid_block_type", "UNetMidBlock2DCrossAttn").find("CrossAttn") == std::string::npos,
            "a mid block without cross-attention");
  refuse_if(u.string("resnet_time_scale_shift", "default") != "default", "resnet_time_scale_shift other than default");
  refuse_if(!u.string("class_embed_type", "").empty() || u.integer("num_class_embeds", 0, 0, 1 << 30) != 0,
            "class embeddings");
  refuse_if(u.boolean("dual_cross_attention", false), "dual_cross_attention");
  if (u.type_of("only_cross_attention") == Json::Type::Bool)
    refuse_if(u.boolean("only_cross_attention", false), "only_cross_attention");
  refuse_if(!u.string("addition_embed_type", "").empty(), "addition_embed_type");
  if (u.type_of("transformer_layers_per_block") == Json::Type::Array) {
    for (int64_t v : u.integers("transformer_layers_per_block", size_t(n), size_t(n), 1, kMaxLayers))
      refuse_if(v != 1, "transformer_layers_per_block other than 1");
  } else {
    refuse_if(u.integer("transformer_layers_per_block", 1, 1, kMaxLayers) != 1,
              "transformer_layers_per_block other than 1");
  }

  parse_motion(root.object("motion"), c);
  require_bytes_at_most("unet config: the weights of this config", estimated_weight_bytes(c), kMaxWeightBytes);
  return c;
}

}  // namespace l2d::unet
