#include "unet_config.h"

#include <algorithm>

#include "../../core/error.h"

namespace l2d::unet {

bool MotionConfig::at_resolution(int level) const {
  const int64_t res = int64_t(1) << level;
  return std::find(resolutions.begin(), resolutions.end(), res) != resolutions.end();
}

namespace {

std::vector<std::string> strings(const Json& j, const char* key) {
  std::vector<std::string> out;
  for (const Json& v : j[key].array()) out.push_back(v.str());
  return out;
}

void refuse_if(bool cond, const std::string& what) {
  if (cond) fail(L2D_ERR_UNSUPPORTED, "unet config: ", what, " is not supported");
}

}  // namespace

UnetConfig parse_unet_config(const Json& config) {
  const Json& u = config["unet"];
  UnetConfig c;
  c.in_channels = int(u.get_int("in_channels", 4));
  c.out_channels = int(u.get_int("out_channels", 4));
  c.block_out_channels = u["block_out_channels"].int_array();
  const int n = c.levels();
  if (n < 1) fail(L2D_ERR_FORMAT, "unet config: block_out_channels is empty");
  c.layers_per_block = int(u.get_int("layers_per_block", 2));
  c.norm_groups = int(u.get_int("norm_num_groups", 32));
  c.norm_eps = float(u.get_number("norm_eps", 1e-5));
  c.cross_attention_dim = int(u.get_int("cross_attention_dim", 1280));
  c.flip_sin_to_cos = u.get_bool("flip_sin_to_cos", true);
  c.freq_shift = float(u.get_number("freq_shift", 0));
  c.downsample_padding = int(u.get_int("downsample_padding", 1));
  c.mid_block_scale_factor = float(u.get_number("mid_block_scale_factor", 1));
  c.use_linear_projection = u.get_bool("use_linear_projection", false);
  c.center_input_sample = u.get_bool("center_input_sample", false);

  if (u.has("attention_head_dim") && u["attention_head_dim"].type() == Json::Type::Array) {
    c.attention_heads = u["attention_head_dim"].int_array();
  } else {
    c.attention_heads.assign(size_t(n), u.get_int("attention_head_dim", 8));
  }
  if (int(c.attention_heads.size()) != n) fail(L2D_ERR_FORMAT, "unet config: attention_head_dim needs ", n, " values");

  const auto down = strings(u, "down_block_types"), up = strings(u, "up_block_types");
  if (int(down.size()) != n || int(up.size()) != n)
    fail(L2D_ERR_FORMAT, "unet config: down_block_types/up_block_types need ", n, " entries (block_out_channels)");
  for (const std::string& t : down) {
    if (t.rfind("CrossAttnDownBlock", 0) == 0) c.down_has_attention.push_back(true);
    else if (t.rfind("DownBlock", 0) == 0) c.down_has_attention.push_back(false);
    else fail(L2D_ERR_UNSUPPORTED, "unet config: down block type \"", t, "\" is not supported");
  }
  for (const std::string& t : up) {
    if (t.rfind("CrossAttnUpBlock", 0) == 0) c.up_has_attention.push_back(true);
    else if (t.rfind("UpBlock", 0) == 0) c.up_has_attention.push_back(false);
    else fail(L2D_ERR_UNSUPPORTED, "unet config: up block type \"", t, "\" is not supported");
  }
  refuse_if(u.get_str("act_fn", "silu") != "silu", "act_fn other than silu");
  refuse_if(u.get_str("mid_block_type", "UNetMidBlock2DCrossAttn").find("CrossAttn") == std::string::npos,
            "a mid block without cross-attention");
  refuse_if(u.get_str("resnet_time_scale_shift", "default") != "default", "resnet_time_scale_shift other than default");
  refuse_if(!u.get_str("class_embed_type", "").empty() || u.get_int("num_class_embeds", 0) != 0, "class embeddings");
  refuse_if(u.get_bool("dual_cross_attention", false), "dual_cross_attention");
  refuse_if(u.has("only_cross_attention") && u["only_cross_attention"].type() == Json::Type::Bool &&
                u["only_cross_attention"].boolean(),
            "only_cross_attention");
  refuse_if(!u.get_str("addition_embed_type", "").empty(), "addition_embed_type");
  refuse_if(u.has("transformer_layers_per_block") && u["transformer_layers_per_block"].type() == Json::Type::Number &&
                u["transformer_layers_per_block"].integer() != 1,
            "transformer_layers_per_block other than 1");

  const Json& m = config["motion"];
  c.cond_mapping = m.get_bool("cond_mapping", false);
  refuse_if(!m.get_bool("use_inflated_groupnorm", false), "use_inflated_groupnorm = false");
  refuse_if(m.get_bool("unet_use_cross_frame_attention", false), "unet_use_cross_frame_attention");
  refuse_if(m.get_bool("unet_use_temporal_attention", false), "unet_use_temporal_attention");
  MotionConfig& mm = c.motion;
  mm.enabled = m.get_bool("use_motion_module", false);
  mm.resolutions = m.has("motion_module_resolutions") ? m["motion_module_resolutions"].int_array()
                                                      : std::vector<int64_t>{1, 2, 4, 8};
  mm.mid_block = m.get_bool("motion_module_mid_block", false);
  mm.decoder_only = m.get_bool("motion_module_decoder_only", false);
  if (mm.enabled) {
    const std::string type = m.get_str("motion_module_type", "Streaming");
    refuse_if(type != "Streaming" && type != "Vanilla", "motion_module_type \"" + type + "\"");
    const Json empty = Json::parse("{}");
    const Json& k = m.has("motion_module_kwargs") ? m["motion_module_kwargs"] : empty;
    mm.heads = int(k.get_int("num_attention_heads", 8));
    mm.transformer_blocks = int(k.get_int("num_transformer_block", 2));
    if (k.has("attention_block_types")) {
      const auto types = strings(k, "attention_block_types");
      for (const std::string& t : types) refuse_if(t != "Temporal_Self", "attention block type \"" + t + "\"");
      mm.attention_blocks = int(types.size());
    }
    mm.dim_div = int(k.get_int("temporal_attention_dim_div", 1));
    mm.max_len = int(k.get_int("temporal_position_encoding_max_len", 32));
    refuse_if(k.get_str("cross_frame_attention_mode", "").size() > 0, "cross_frame_attention_mode");
    refuse_if(k.get_int("num_3d_conv_layers", 0) != 0, "num_3d_conv_layers");
    if (k.has("attention_kwargs")) {
      mm.window = int(k["attention_kwargs"].get_int("window_size", 8));
      mm.sink = int(k["attention_kwargs"].get_int("sink_size", 0));
    }
    if (mm.heads < 1 || mm.transformer_blocks < 1 || mm.attention_blocks < 1 || mm.dim_div < 1 || mm.max_len < 1)
      fail(L2D_ERR_FORMAT, "unet config: motion_module_kwargs has a non-positive size");
    if (mm.sink < 1 || mm.window <= mm.sink || mm.window > mm.max_len)
      fail(L2D_ERR_FORMAT, "unet config: attention_kwargs window_size ", mm.window, " / sink_size ", mm.sink,
           " must satisfy 1 <= sink < window <= temporal_position_encoding_max_len (", mm.max_len, ")");
  }
  for (int64_t ch : c.block_out_channels)
    if (ch <= 0 || ch % c.norm_groups != 0)
      fail(L2D_ERR_FORMAT, "unet config: block_out_channels ", ch, " is not a multiple of norm_num_groups ",
           c.norm_groups);
  return c;
}

}  // namespace l2d::unet
