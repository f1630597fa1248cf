// unet_model.h: the Live2Diff 3-D UNet as a model object (kind "unet"; sessions and registration in
// unet_model.cpp). Immutable after construction, so any number of sessions (or pipelines) share
// one instance: per-call state travels in RunCtx, per-stream state (KV caches) in a KvCache.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../../kv_cache/kv_cache.h"
#include "../model.h"
#include "unet_blocks.h"
#include "unet_config.h"

namespace l2d::unet {

// One down/mid/up block: resnets, optional spatial transformers and motion modules (one per
// resnet; the mid block's transformer follows resnet 0), optional resampling conv.
struct Block {
  std::vector<Resnet> resnets;
  std::vector<SpatialTransformer> attentions;
  std::vector<MotionModule> motion;
  Conv resample;  // downsampler / upsampler conv (w undefined when absent)
};

class UnetModel final : public Model {
 public:
  // Builds the network from {"unet": <diffusers config>, "motion": <unet_additional_kwargs>} and
  // the weights (shape-checked; unused tensors other than "grid" keys are an error).
  UnetModel(Backend& be, const Json& config, const TensorMap& weights);

  void run(const std::string& method, TensorMap& io) override;
  std::unique_ptr<Session> create_session(const Json& config) override;

  const UnetConfig& config() const { return cfg_; }
  Backend& backend() const { return be_; }
  // Number of KV-cache layers (temporal attention blocks, motion-module order).
  size_t num_cache_layers() const { return cache_levels_.size(); }

  // Cache layers (motion-module order) for a latent size; throws L2D_ERR_INVALID_ARGUMENT unless
  // every halving is exact (golden README pitfall 11).
  std::vector<KvCache::LayerSpec> cache_specs(int64_t h, int64_t w) const;

  // One UNet call. x: [N = B*F, Cin, H, W] frames folded into the batch (n = b*F + f); depth the
  // same (ignored without cond_mapping); t: one timestep per b (c.B values). c must carry B, F,
  // the prompt context ([1 or N, L, Cx]), the KvCache and, per mode, the warmup row or the
  // uploaded bookkeeping. Returns the noise prediction [N, Cout, H, W]. Warmup writes slots
  // 0..F-1 of row c.warmup_row of every cache; streaming writes slot update_idx[r] of each row
  // (the caller applies KvCache::advance() afterwards).
  Tensor forward(RunCtx& c, Tensor x, const Tensor& depth, const std::vector<float>& t) const;
  // The same with the sinusoidal timestep features precomputed by timestep_features(t): a stream
  // whose timesteps never change uploads them once instead of every frame.
  Tensor forward(RunCtx& c, Tensor x, const Tensor& depth, const Tensor& t_features) const;
  // Sinusoidal timestep features [t.size(), C0] on the backend (diffusers Timesteps).
  Tensor timestep_features(const std::vector<float>& t) const;

  // Number of cross-attention layers (spatial transformers, model order).
  size_t num_context_layers() const { return xattn_.size(); }
  // The cross-attention K/V of every spatial transformer for a prompt context [1|N, L, Cx], once per
  // prompt instead of once per forward; pass `out` in RunCtx::context_kv. When `out` already holds
  // tensors of these shapes they are overwritten IN PLACE (their device addresses stay valid for a
  // captured CUDA graph that reads them); otherwise they are allocated. Returns true when the
  // tensors were (re)allocated or dropped, i.e. when their addresses changed.
  // With the environment variable L2D_CONTEXT_KV=0 (read on every call) `out` is cleared instead,
  // so forward projects the context itself (the eager path, for comparison).
  bool prepare_context(const Tensor& context, ContextKv& out) const;

 private:
  Backend& be_;
  UnetConfig cfg_;
  Conv conv_in_, conv_out_;
  MappingNetwork mapping_;
  Linear time1_, time2_;
  Norm norm_out_;
  std::vector<Block> down_, up_;
  Block mid_;
  std::vector<const SpatialTransformer*> xattn_;  // into down_/mid_/up_ (fixed after construction)
  std::vector<int> cache_levels_;
  std::vector<int64_t> cache_channels_;
};

}  // namespace l2d::unet
