// unet_blocks.h: the layers of the Live2Diff 3-D UNet, written only against the Backend interface.
//
// Activations are "inflated": a video [B, C, F, H, W] (b, c, f, h, w as in the original) lives as
// frames folded into the batch, [N = B*F, C, H, W] with n = b*F + f, so every 2-D op (convs,
// group norms, spatial transformers) runs per frame. Only the motion modules look across frames:
//  * warmup (B = 1, F frames): bi-directional attention over the F frames with PE 0..F-1 added as
//    W(x) + W(pe); the PE-free K/V of the frames are written to slots 0..F-1 of the step's cache row;
//  * stream (B = T rows, F = 1): Backend::stream_temporal_attention against the KV cache with the
//    session's bookkeeping and the projected PE tables qpe/kpe/vpe (computed once at load).
#pragma once

#include <string>
#include <vector>

#include "../../core/backend.h"
#include "../../kv_cache/kv_cache.h"
#include "../weights.h"
#include "unet_config.h"

namespace l2d::unet {

struct Linear {
  Tensor w, b;  // b may be undefined
  Tensor operator()(Backend& be, const Tensor& x) const { return be.linear(x, w, b.defined() ? &b : nullptr); }
  // (*this)(x) + residual as one op (a residual connection; residual has the output's shape).
  Tensor add(Backend& be, const Tensor& x, const Tensor& residual) const {
    return be.linear_add(x, w, b.defined() ? &b : nullptr, residual);
  }
  // (*this)(t) for tokens t [N, height * width, in] written as the image [N, out, height, width],
  // + residual (that shape) as one op: a transformer's output projection back to NCHW.
  Tensor to_image(Backend& be, const Tensor& t, const Tensor& residual, int64_t height, int64_t width) const {
    return be.linear_to_image(t, w, b.defined() ? &b : nullptr, &residual, height, width);
  }
};

struct Conv {
  Tensor w, b;
  Conv2dParams p;
  Tensor operator()(Backend& be, const Tensor& x) const { return be.conv2d(x, w, b.defined() ? &b : nullptr, p); }
};

struct Norm {
  Tensor g, b;
};

// WeightLoader with the shapes of the layer kinds used here.
class Loader {
 public:
  explicit Loader(WeightLoader& w) : w_(w) {}
  Linear linear(const std::string& name, int64_t out, int64_t in, bool bias = true);
  Conv conv(const std::string& name, int64_t out, int64_t in, int k, int stride, int pad);
  Norm norm(const std::string& name, int64_t channels);
  WeightLoader& raw() { return w_; }

 private:
  WeightLoader& w_;
};

enum class Mode { Warmup, Stream };

// The cross-attention keys and values of one prompt for every spatial transformer (attn2), made by
// UnetModel::prepare_context when the prompt changes instead of by every frame's forward: the
// prompt rows are the same on every streamed frame, so W_k context and W_v context are too.
struct ContextKv {
  std::vector<Tensor> k, v;  // per cross-attention layer (SpatialTransformer::context_layer): [1|N, L, dim]
  bool empty() const { return k.empty(); }
  void clear() {
    k.clear();
    v.clear();
  }
};

// Per-call state threaded through the blocks (the model itself is immutable, so sessions share it).
struct RunCtx {
  RunCtx(Backend& backend, Mode m) : be(backend), mode(m) {}
  Backend& be;
  Mode mode;
  int64_t B = 1, F = 1;  // N = B*F frames in the batch
  Tensor temb_silu;      // SiLU(time embedding) [B, Ct]
  Tensor context;        // prompt embedding, batch 1 or N: [1|N, L, Cx]
  // When set and not empty: the cross-attention K/V of `context`, used instead of projecting it.
  const ContextKv* context_kv = nullptr;
  KvCache* cache = nullptr;
  int warmup_row = 0;                          // warmup: the cache row of this denoising step
  const KvCache::DeviceState* state = nullptr;  // stream: bookkeeping of this call
};

struct Resnet {
  Norm norm1, norm2;
  Conv conv1, conv2, shortcut;  // shortcut.w undefined when channels do not change
  Linear time_proj;
  int groups = 32;
  float eps = 1e-5f, output_scale = 1.f;
  void load(Loader& L, const std::string& prefix, int64_t in, int64_t out, int64_t temb, int groups, float eps,
            float output_scale);
  Tensor operator()(RunCtx& c, const Tensor& x) const;
};

struct Attention {
  // Cross-attention (attn2): q, k, v. Self-attention (attn1, loaded with packed_qkv): qkv holds
  // [W_q; W_k; W_v] [3 dim, dim], packed at load (one GEMM per call, Backend::self_attention reads
  // its column blocks), and q, k, v stay empty.
  Linear q, k, v, qkv, out;
  int heads = 8;
  void load(Loader& L, const std::string& prefix, int64_t dim, int64_t context_dim, int heads,
            bool packed_qkv = false);
};

// Transformer3DModel: GroupNorm -> proj_in -> BasicTransformerBlock -> proj_out -> + residual.
// Runs in tokens from the norm to proj_out: group_norm_tokens writes [N, HW, C] and
// linear_to_image writes proj_out's NCHW result with the residual added, so no permute pass.
struct SpatialTransformer {
  Norm norm, norm1, norm2, norm3;
  // Linear layers on tokens in both checkpoint forms: use_linear_projection's [C, C] weights, or the
  // 1x1 convolutions' [C, C, 1, 1] weights viewed as [C, C] (a reshape: the same storage).
  Linear proj_in, proj_out;
  Attention attn1, attn2;
  Linear ff_in, ff_out;
  int groups = 32;
  size_t context_layer = 0;  // index of this block's K/V in a ContextKv (model order)
  void load(Loader& L, const std::string& prefix, int64_t channels, int64_t context_dim, int heads, int groups,
            bool linear_projection);
  Tensor operator()(RunCtx& c, const Tensor& x) const;
  // attn2's keys and values of a context [1|N, L, Cx] -> [1|N, L, dim] each.
  Tensor context_k(Backend& be, const Tensor& context) const { return attn2.k(be, context); }
  Tensor context_v(Backend& be, const Tensor& context) const { return attn2.v(be, context); }
};

struct TemporalAttention {
  Linear qkv, out;       // qkv: [W_q; W_k; W_v] [3C, C], packed at load (no bias)
  Tensor qpe, kpe, vpe;  // [max_len, C]: W_q/k/v applied to the sinusoidal PE table
  int heads = 8;
  size_t cache_layer = 0;
};

// VanillaTemporalModule / TemporalTransformer3DModel with Live2Diff's two attention modes. Like the
// spatial transformer, in tokens from group_norm_tokens to linear_to_image (proj_out + residual).
struct MotionModule {
  struct Block {
    std::vector<Norm> norms;
    std::vector<TemporalAttention> attn;
    Norm ff_norm;
    Linear ff_in, ff_out;
  };
  Norm norm;
  Linear proj_in, proj_out;
  std::vector<Block> blocks;
  int groups = 32;
  int level = 0;
  int64_t inner = 0;
  // Loads the weights and assigns cache layers next_cache, next_cache + 1, ... (module order).
  void load(Loader& L, const std::string& prefix, int64_t channels, const MotionConfig& m, int level,
            size_t& next_cache);
  Tensor operator()(RunCtx& c, const Tensor& x) const;
};

// The depth mapping network flow_conv_in (golden README item 12).
struct MappingNetwork {
  Conv conv_in, conv_out;
  std::vector<Conv> blocks;
  void load(Loader& L, const std::string& prefix, int64_t in, int64_t out);
  Tensor operator()(Backend& be, const Tensor& x) const;
};

// Sinusoidal PE table [max_len, C] exactly as PositionalEncoding (float32 arithmetic like torch).
std::vector<float> sinusoidal_pe(int max_len, int64_t channels);
// diffusers Timesteps: [n, C] host values (float32 arithmetic like torch).
std::vector<float> timestep_embedding(const std::vector<float>& t, int64_t channels, bool flip_sin_to_cos,
                                      float freq_shift);

}  // namespace l2d::unet
