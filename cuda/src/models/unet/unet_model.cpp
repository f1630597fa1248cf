// unet_model.cpp: model kind "unet", the Live2Diff 3-D UNet (UNet3DConditionWarmupModel and
// UNet3DConditionStreamingModel share one set of weights) with its per-stream session.
//
// Model config: {"unet": <diffusers unet/config.json>, "motion": <Live2Diff unet_additional_kwargs>}.
// Weights: diffusers 2-D UNet keys + motion-module keys (without "module.") + flow_conv_in.*;
// `...pos_encoder.pe` buffers are used when present (else computed); keys containing "grid" are
// ignored; anything else unused is an error.
//
// Session config {"steps": T, "latent_height": h, "latent_width": w, "count_ops": false}. Methods:
//   warmup     sample/depth [1,Cin,F,h,w] (F = sink_size, 8), encoder_hidden_states [1,L,Cx], timestep [1], step [1]
//              -> noise_pred [1,Cout,F,h,w]; writes slots 0..F-1 of cache row `step`.
//   stream     sample/depth [T,Cin,1,h,w], encoder_hidden_states [T|1,L,Cx], timesteps [T]
//              -> noise_pred [T,Cout,1,h,w], attn_bias_used/pe_idx_used/update_idx_used (the
//              bookkeeping this call used); then applies the update rule.
//   get_state  -> kv_cache_XX [T,2,P_l,W,C_l] (all, or those listed in optional input
//              cache_index), attn_bias [T,W], pe_idx [T,W], update_idx [T].
//   set_state  any of kv_cache_XX (full, or slots 0..k-1 as [T,2,P_l,k,C_l]) and the three
//              bookkeeping tensors (all three together).
//   reset      zero caches, initial bookkeeping.
// The cross-attention K/V of encoder_hidden_states are computed once per distinct value
// (UnetModel::prepare_context), not per call. With "count_ops", warmup and stream also return the
// backend calls of their UNet forward: op_count_<op>, op_count_total, gemm_flops, and
// context_kv_prepared / context_kv_reallocated (I64 [1] each).
// A stream call that fails midway may have written some layers' slots without advancing the
// bookkeeping: call reset (or set_state) before streaming again.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../../core/config.h"
#include "../../core/counting_backend.h"
#include "unet_model.h"

namespace l2d::unet {

UnetModel::UnetModel(Backend& be, const Json& config, const TensorMap& weights)
    : be_(be), cfg_(parse_unet_config(config)) {
  WeightLoader wl(be, weights, "unet");
  Loader L(wl);
  const UnetConfig& c = cfg_;
  const int n = c.levels();
  const auto& ch = c.block_out_channels;
  const int64_t temb = c.time_embed_dim();
  const MotionConfig& mm = c.motion;
  size_t next_cache = 0;

  conv_in_ = L.conv("conv_in", ch[0], c.in_channels, 3, 1, 1);
  if (c.cond_mapping) mapping_.load(L, "flow_conv_in", c.in_channels, ch[0]);
  time1_ = L.linear("time_embedding.linear_1", temb, ch[0]);
  time2_ = L.linear("time_embedding.linear_2", temb, temb);

  auto add_motion = [&](Block& b, const std::string& prefix, int64_t channels, int level) {
    MotionModule m;
    m.load(L, prefix, channels, mm, level, next_cache);
    cache_levels_.resize(next_cache, level);
    cache_channels_.resize(next_cache, m.inner);
    b.motion.push_back(std::move(m));
  };

  int64_t out = ch[0];
  for (int i = 0; i < n; ++i) {
    const int64_t in = out;
    out = ch[size_t(i)];
    const std::string p = "down_blocks." + std::to_string(i);
    const bool motion = mm.enabled && mm.at_resolution(i) && !mm.decoder_only;
    Block b;
    for (int j = 0; j < c.layers_per_block; ++j) {
      Resnet r;
      r.load(L, p + ".resnets." + std::to_string(j), j == 0 ? in : out, out, temb, c.norm_groups, c.norm_eps, 1.f);
      b.resnets.push_back(std::move(r));
      if (c.down_has_attention[size_t(i)]) {
        SpatialTransformer t;
        t.load(L, p + ".attentions." + std::to_string(j), out, c.cross_attention_dim,
               int(c.attention_heads[size_t(i)]), c.norm_groups, c.use_linear_projection);
        b.attentions.push_back(std::move(t));
      }
      if (motion) add_motion(b, p + ".motion_modules." + std::to_string(j), out, i);
    }
    if (i < n - 1) b.resample = L.conv(p + ".downsamplers.0.conv", out, out, 3, 2, c.downsample_padding);
    down_.push_back(std::move(b));
  }

  {
    const int64_t mc = ch.back();
    Resnet r0;
    r0.load(L, "mid_block.resnets.0", mc, mc, temb, c.norm_groups, c.norm_eps, c.mid_block_scale_factor);
    mid_.resnets.push_back(std::move(r0));
    SpatialTransformer t;
    t.load(L, "mid_block.attentions.0", mc, c.cross_attention_dim, int(c.attention_heads.back()), c.norm_groups,
           c.use_linear_projection);
    mid_.attentions.push_back(std::move(t));
    if (mm.enabled && mm.mid_block) add_motion(mid_, "mid_block.motion_modules.0", mc, n - 1);
    Resnet r1;
    r1.load(L, "mid_block.resnets.1", mc, mc, temb, c.norm_groups, c.norm_eps, c.mid_block_scale_factor);
    mid_.resnets.push_back(std::move(r1));
  }

  out = ch.back();
  for (int i = 0; i < n; ++i) {
    const int64_t prev = out;
    out = ch[size_t(n - 1 - i)];
    const int64_t in = ch[size_t(std::max(n - 2 - i, 0))];
    const int level = n - 1 - i;
    const std::string p = "up_blocks." + std::to_string(i);
    const bool motion = mm.enabled && mm.at_resolution(level);
    Block b;
    for (int j = 0; j <= c.layers_per_block; ++j) {
      const int64_t skip = j == c.layers_per_block ? in : out;
      const int64_t rin = j == 0 ? prev : out;
      Resnet r;
      r.load(L, p + ".resnets." + std::to_string(j), rin + skip, out, temb, c.norm_groups, c.norm_eps, 1.f);
      b.resnets.push_back(std::move(r));
      if (c.up_has_attention[size_t(i)]) {
        SpatialTransformer t;
        t.load(L, p + ".attentions." + std::to_string(j), out, c.cross_attention_dim,
               int(c.attention_heads[size_t(n - 1 - i)]), c.norm_groups, c.use_linear_projection);
        b.attentions.push_back(std::move(t));
      }
      if (motion) add_motion(b, p + ".motion_modules." + std::to_string(j), out, level);
    }
    if (i < n - 1) b.resample = L.conv(p + ".upsamplers.0.conv", out, out, 3, 1, 1);
    up_.push_back(std::move(b));
  }

  norm_out_ = L.norm("conv_norm_out", ch[0]);
  conv_out_ = L.conv("conv_out", c.out_channels, ch[0], 3, 1, 1);
  wl.check_all_used({"grid"});

  // The cross-attention layers in forward order (the blocks no longer move, so pointers are stable).
  auto add_xattn = [&](Block& b) {
    for (SpatialTransformer& t : b.attentions) {
      t.context_layer = xattn_.size();
      xattn_.push_back(&t);
    }
  };
  for (Block& b : down_) add_xattn(b);
  add_xattn(mid_);
  for (Block& b : up_) add_xattn(b);
}

namespace {

// L2D_CONTEXT_KV=0 switches the per-prompt cross-attention K/V off (the eager path).
bool context_kv_enabled() {
  const char* env = std::getenv("L2D_CONTEXT_KV");
  return !(env && std::strcmp(env, "0") == 0);
}

}  // namespace

bool UnetModel::prepare_context(const Tensor& context, ContextKv& out) const {
  if (!context_kv_enabled()) {
    const bool had = !out.empty();
    out.clear();
    return had;
  }
  L2D_ASSERT(context.ndim() == 3 && context.dim(2) == cfg_.cross_attention_dim);
  bool same = out.k.size() == xattn_.size() && out.v.size() == xattn_.size();
  for (size_t i = 0; same && i < xattn_.size(); ++i) {
    const int64_t dim = xattn_[i]->attn2.k.w.dim(0);
    const Shape want{context.dim(0), context.dim(1), dim};
    same = out.k[i].shape() == want && out.v[i].shape() == want && out.k[i].dtype() == be_.float_dtype() &&
           out.v[i].dtype() == be_.float_dtype();
  }
  if (!same) {
    out.k.assign(xattn_.size(), Tensor());
    out.v.assign(xattn_.size(), Tensor());
  }
  try {
    for (size_t i = 0; i < xattn_.size(); ++i) {
      Tensor k = xattn_[i]->context_k(be_, context), v = xattn_[i]->context_v(be_, context);
      if (same) {
        be_.write_slice(out.k[i], k, {0, 0, 0});
        be_.write_slice(out.v[i], v, {0, 0, 0});
      } else {
        out.k[i] = std::move(k);
        out.v[i] = std::move(v);
      }
    }
  } catch (...) {
    out.clear();  // never half old, half new prompt: forward falls back to projecting the context
    throw;
  }
  return !same;
}

void UnetModel::run(const std::string& method, TensorMap&) { unknown_method("unet", method); }

std::vector<KvCache::LayerSpec> UnetModel::cache_specs(int64_t h, int64_t w) const {
  const int64_t f = int64_t(1) << (cfg_.levels() - 1);
  if (h < 1 || w < 1 || h % f != 0 || w % f != 0)
    fail(L2D_ERR_INVALID_ARGUMENT, "unet: latent size ", h, "x", w, " must be a positive multiple of ", f,
         " (image size a multiple of ", 8 * f, "): the original sizes its KV caches by floor-halving per level "
         "while the stride-2 convolutions round up");
  std::vector<KvCache::LayerSpec> specs;
  for (size_t i = 0; i < cache_levels_.size(); ++i)
    specs.push_back({(h >> cache_levels_[i]) * (w >> cache_levels_[i]), cache_channels_[i]});
  return specs;
}

Tensor UnetModel::timestep_features(const std::vector<float>& t) const {
  const int64_t c0 = cfg_.block_out_channels[0];
  const std::vector<float> emb_host = timestep_embedding(t, c0, cfg_.flip_sin_to_cos, cfg_.freq_shift);
  return be_.from_host(HostTensor::from_f32({int64_t(t.size()), c0}, emb_host.data()));
}

Tensor UnetModel::forward(RunCtx& c, Tensor x, const Tensor& depth, const std::vector<float>& t) const {
  return forward(c, std::move(x), depth, timestep_features(t));
}

Tensor UnetModel::forward(RunCtx& c, Tensor x, const Tensor& depth, const Tensor& t_features) const {
  Backend& be = c.be;
  const UnetConfig& cf = cfg_;
  if (cf.center_input_sample) x = be.unary(x, Unary::Affine, 2.f, -1.f);
  Tensor emb = time2_(be, be.unary(time1_(be, t_features), Unary::Silu));
  c.temb_silu = be.unary(emb, Unary::Silu);

  Tensor h = conv_in_(be, x);
  if (cf.cond_mapping) h = be.binary(mapping_(be, depth), h, Binary::Add);

  std::vector<Tensor> skips{h};
  for (const Block& b : down_) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      h = b.resnets[j](c, h);
      if (!b.attentions.empty()) h = b.attentions[j](c, h);
      if (!b.motion.empty()) h = b.motion[j](c, h);
      skips.push_back(h);
    }
    if (b.resample.w.defined()) {
      h = b.resample(be, h);
      skips.push_back(h);
    }
  }

  h = mid_.resnets[0](c, h);
  h = mid_.attentions[0](c, h);
  if (!mid_.motion.empty()) h = mid_.motion[0](c, h);
  h = mid_.resnets[1](c, h);

  for (const Block& b : up_) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      L2D_ASSERT(!skips.empty());
      h = be.concat({h, skips.back()}, 1);
      skips.pop_back();
      h = b.resnets[j](c, h);
      if (!b.attentions.empty()) h = b.attentions[j](c, h);
      if (!b.motion.empty()) h = b.motion[j](c, h);
    }
    if (b.resample.w.defined()) h = b.resample(be, be.upsample_nearest(h, int(h.dim(2) * 2), int(h.dim(3) * 2)));
  }

  h = be.group_norm(h, cf.norm_groups, norm_out_.g, norm_out_.b, cf.norm_eps, /*fuse_silu=*/true);
  return conv_out_(be, h);
}

namespace {

class UnetSession final : public Session {
 public:
  UnetSession(UnetModel& model, int steps, int64_t h, int64_t w, bool count_ops)
      : counter_(count_ops ? std::make_unique<CountingBackend>(model.backend()) : nullptr),
        m_(model),
        h_(h),
        w_(w),
        cache_(model.backend(), steps, model.config().motion.window, model.config().motion.sink,
               model.cache_specs(h, w)) {}

  void run(const std::string& method, TensorMap& io) override {
    if (method == "warmup") warmup(io);
    else if (method == "stream") stream(io);
    else if (method == "get_state") get_state(io);
    else if (method == "set_state") set_state(io);
    else if (method == "reset") cache_.reset();
    else unknown_method("unet session", method);
  }

 private:
  Backend& be() { return m_.backend(); }
  // The backend the forward runs on: the model's, or the counting wrapper around it.
  Backend& run_be() { return counter_ ? static_cast<Backend&>(*counter_) : be(); }

  // The cross-attention K/V of this call's context (the tensor made from encoder_hidden_states),
  // recomputed only when the input's values change: a session streaming with one prompt projects
  // it once. (L2D_CONTEXT_KV is read when they are recomputed.)
  const ContextKv* context_kv(const TensorMap& io, const Tensor& context) {
    const HostTensor& src = io.at("encoder_hidden_states", "unet session");
    kv_prepared_ = kv_reallocated_ = false;
    if (kv_src_valid_ && src.dtype == kv_src_.dtype && src.shape == kv_src_.shape && src.bytes == kv_src_.bytes)
      return &context_kv_;
    kv_src_valid_ = false;
    kv_reallocated_ = m_.prepare_context(context, context_kv_);
    kv_prepared_ = true;
    kv_src_ = src;
    kv_src_valid_ = true;
    return &context_kv_;
  }

  // With {"count_ops": true}: the backend calls of this forward, as I64 [1] outputs op_count_<op>,
  // op_count_total and gemm_flops (2 M N K over the GEMMs), and whether this call prepared the
  // context K/V (context_kv_prepared) into new tensors (context_kv_reallocated) or in place.
  void put_op_counts(TensorMap& io) {
    if (!counter_) return;
    const int64_t prepared = kv_prepared_, reallocated = kv_reallocated_;
    io.put("context_kv_prepared", HostTensor::from_i64({1}, &prepared));
    io.put("context_kv_reallocated", HostTensor::from_i64({1}, &reallocated));
    for (const auto& [op, calls] : counter_->counts()) io.put("op_count_" + op, HostTensor::from_i64({1}, &calls));
    const int64_t total = counter_->total(), flops = int64_t(counter_->gemm_flops());
    io.put("op_count_total", HostTensor::from_i64({1}, &total));
    io.put("gemm_flops", HostTensor::from_i64({1}, &flops));
    counter_->reset();
  }

  // A video input [B, C, F, h, w] as folded frames [B*F, C, h, w].
  Tensor video(const TensorMap& io, const char* name, int64_t B, int64_t C, int64_t F) {
    const HostTensor& t = io.at(name, "unet session");
    const Shape want{B, C, F, h_, w_};
    if (t.shape != want)
      fail(L2D_ERR_INVALID_ARGUMENT, "unet session: ", name, " must have shape ", shape_str(want), ", got ",
           shape_str(t.shape));
    Tensor x = be().from_host(t);
    if (F == 1) return x.reshape({B, C, h_, w_});
    return be().permute(x, {0, 2, 1, 3, 4}).reshape({B * F, C, h_, w_});
  }

  // encoder_hidden_states [1|B, L, Cx] as the context of B*F frames (batch 1 stays broadcast).
  Tensor context(const TensorMap& io, int64_t B, int64_t F) {
    const HostTensor& t = io.at("encoder_hidden_states", "unet session");
    const int64_t cx = m_.config().cross_attention_dim;
    if (t.shape.size() != 3 || (t.shape[0] != 1 && t.shape[0] != B) || t.shape[2] != cx)
      fail(L2D_ERR_INVALID_ARGUMENT, "unet session: encoder_hidden_states must be [1 or ", B, ", L, ", cx, "], got ",
           shape_str(t.shape));
    Tensor e = be().from_host(t);
    if (t.shape[0] == 1 || F == 1) return e;
    const int64_t L = t.shape[1];
    std::vector<Tensor> reps(size_t(F), e.reshape({B, 1, L * cx}));
    return be().concat(reps, 1).reshape({B * F, L, cx});
  }

  std::vector<float> timesteps(const TensorMap& io, const char* name, int64_t B) {
    const HostTensor& t = io.at(name, "unet session");
    std::vector<float> v = t.to_f32();
    if (v.size() == 1 && B > 1) v.assign(size_t(B), v[0]);
    if (int64_t(v.size()) != B)
      fail(L2D_ERR_INVALID_ARGUMENT, "unet session: ", name, " must have ", B, " values, got ", v.size());
    return v;
  }

  HostTensor unfold(const Tensor& y, int64_t B, int64_t F) {
    const int64_t C = y.dim(1);
    Tensor out = F == 1 ? y.reshape({B, C, 1, h_, w_}) : be().permute(y.reshape({B, F, C, h_, w_}), {0, 2, 1, 3, 4});
    return be().to_host(out);
  }

  void warmup(TensorMap& io) {
    const UnetConfig& c = m_.config();
    const HostTensor& s = io.at("sample", "unet session warmup");
    if (s.shape.size() != 5 || s.shape[0] != 1)
      fail(L2D_ERR_INVALID_ARGUMENT, "unet session warmup: sample must be [1, ", c.in_channels, ", F, ", h_, ", ", w_,
           "], got ", shape_str(s.shape));
    const int64_t F = s.shape[2];
    // The bookkeeping treats slots 0..sink-1 as the warmup frames, so exactly `sink` frames.
    L2D_REQUIRE(F == cache_.sink(), "unet session warmup: sample has ", F, " frames, the motion modules' sink_size is ",
                cache_.sink());
    const std::vector<int64_t> step = io.at("step", "unet session warmup").to_i64();
    L2D_REQUIRE(step.size() == 1 && step[0] >= 0 && step[0] < cache_.steps(), "unet session warmup: step must be one "
                "value in 0..", cache_.steps() - 1);
    RunCtx ctx{run_be(), Mode::Warmup};
    ctx.B = 1;
    ctx.F = F;
    ctx.cache = &cache_;
    ctx.warmup_row = int(step[0]);
    ctx.context = context(io, 1, F);
    ctx.context_kv = context_kv(io, ctx.context);
    Tensor x = video(io, "sample", 1, c.in_channels, F);
    Tensor d = c.cond_mapping ? video(io, "depth", 1, c.in_channels, F) : Tensor();
    const std::vector<float> t = timesteps(io, "timestep", 1);
    if (counter_) counter_->reset();
    Tensor y = m_.forward(ctx, x, d, t);
    put_op_counts(io);
    io.put("noise_pred", unfold(y, 1, F));
  }

  void stream(TensorMap& io) {
    const UnetConfig& c = m_.config();
    const int64_t T = cache_.steps();
    RunCtx ctx{run_be(), Mode::Stream};
    ctx.B = T;
    ctx.F = 1;
    ctx.cache = &cache_;
    const KvCache::DeviceState state = cache_.upload_state();
    ctx.state = &state;
    ctx.context = context(io, T, 1);
    ctx.context_kv = context_kv(io, ctx.context);
    Tensor x = video(io, "sample", T, c.in_channels, 1);
    Tensor d = c.cond_mapping ? video(io, "depth", T, c.in_channels, 1) : Tensor();
    const std::vector<float> t = timesteps(io, "timesteps", T);
    put_bookkeeping(io, "_used");
    if (counter_) counter_->reset();
    Tensor y = m_.forward(ctx, x, d, t);
    put_op_counts(io);
    io.put("noise_pred", unfold(y, T, 1));
    cache_.advance();
  }

  void put_bookkeeping(TensorMap& io, const std::string& suffix) {
    const int64_t T = cache_.steps(), W = cache_.window();
    std::vector<int64_t> pe(cache_.pe_idx().begin(), cache_.pe_idx().end());
    std::vector<int64_t> up(cache_.update_idx().begin(), cache_.update_idx().end());
    io.put("attn_bias" + suffix, HostTensor::from_f32({T, W}, cache_.attn_bias().data()));
    io.put("pe_idx" + suffix, HostTensor::from_i64({T, W}, pe.data()));
    io.put("update_idx" + suffix, HostTensor::from_i64({T}, up.data()));
  }

  void get_state(TensorMap& io) {
    std::vector<int64_t> which;
    if (io.has("cache_index")) which = io.at("cache_index", "unet session").to_i64();
    else
      for (size_t i = 0; i < cache_.num_layers(); ++i) which.push_back(int64_t(i));
    for (int64_t i : which) {
      L2D_REQUIRE(i >= 0 && size_t(i) < cache_.num_layers(), "unet session: cache_index ", i, " is outside 0..",
                  cache_.num_layers() - 1);
      io.put(KvCache::layer_name(size_t(i)), cache_.get_cache(size_t(i)));
    }
    put_bookkeeping(io, "");
  }

  void set_state(TensorMap& io) {
    for (size_t i = 0; i < cache_.num_layers(); ++i)
      if (io.has(KvCache::layer_name(i))) cache_.set_cache(i, io.at(KvCache::layer_name(i), "unet session"));
    const int present = io.has("attn_bias") + io.has("pe_idx") + io.has("update_idx");
    L2D_REQUIRE(present == 0 || present == 3, "unet session set_state: attn_bias, pe_idx and update_idx go together");
    if (present == 3)
      cache_.set_bookkeeping(io.at("attn_bias", "set_state").to_f32(), io.at("pe_idx", "set_state").to_i64(),
                             io.at("update_idx", "set_state").to_i64());
  }

  // First, so it is destroyed last: tensors that Backend::concat made through it point at it.
  std::unique_ptr<CountingBackend> counter_;
  UnetModel& m_;
  int64_t h_, w_;
  KvCache cache_;
  ContextKv context_kv_;
  HostTensor kv_src_;  // the encoder_hidden_states context_kv_ was made from
  bool kv_src_valid_ = false;
  bool kv_prepared_ = false, kv_reallocated_ = false;  // by this call (count_ops reports them)
};

}  // namespace

std::unique_ptr<Session> UnetModel::create_session(const Json& config) {
  // Checked before anything is sized by them; the KV cache then refuses sizes beyond its budget.
  const ConfigReader c(config, "unet session config", L2D_ERR_INVALID_ARGUMENT);
  const int64_t steps = c.integer("steps", 1, 64);
  const int64_t h = c.integer("latent_height", 1, 4096), w = c.integer("latent_width", 1, 4096);
  const bool count_ops = c.boolean("count_ops", false);
  L2D_REQUIRE(cfg_.motion.enabled, "unet session: the model has no motion modules (use_motion_module is false)");
  return std::make_unique<UnetSession>(*this, int(steps), h, w, count_ops);
}

namespace {

const ModelRegistrar kRegistrar("unet", [](Backend& be, const Json& config, const TensorMap& weights) {
  return std::unique_ptr<Model>(new UnetModel(be, config, weights));
});

}  // namespace
}  // namespace l2d::unet

