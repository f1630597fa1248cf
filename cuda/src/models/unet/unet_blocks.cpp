#include "unet_blocks.h"

#include <cmath>

namespace l2d::unet {

// ---- loading helpers ----

Linear Loader::linear(const std::string& name, int64_t out, int64_t in, bool bias) {
  Linear l;
  l.w = w_.get(name + ".weight", {out, in});
  if (bias) l.b = w_.get(name + ".bias", {out});
  return l;
}

Conv Loader::conv(const std::string& name, int64_t out, int64_t in, int k, int stride, int pad) {
  Conv c;
  c.w = w_.get(name + ".weight", {out, in, k, k});
  c.b = w_.get(name + ".bias", {out});
  c.p = Conv2dParams::same_pad(stride, pad);
  return c;
}

Norm Loader::norm(const std::string& name, int64_t channels) {
  return {w_.get(name + ".weight", {channels}), w_.get(name + ".bias", {channels})};
}

// ---- host-side sinusoids (tiny; computed in float32 like the PyTorch code) ----

std::vector<float> sinusoidal_pe(int max_len, int64_t channels) {
  // div_term = exp(arange(0, C, 2) * (-ln(10000) / C)); pe[p, 2i] = sin(p * div), pe[p, 2i+1] = cos(p * div)
  std::vector<float> pe(size_t(max_len) * size_t(channels), 0.f);
  const float scale = float(-std::log(10000.0) / double(channels));
  for (int64_t i = 0; 2 * i < channels; ++i) {
    const float div = std::exp(float(2 * i) * scale);
    for (int p = 0; p < max_len; ++p) {
      const float a = float(p) * div;
      pe[size_t(p * channels + 2 * i)] = std::sin(a);
      if (2 * i + 1 < channels) pe[size_t(p * channels + 2 * i + 1)] = std::cos(a);
    }
  }
  return pe;
}

std::vector<float> timestep_embedding(const std::vector<float>& t, int64_t channels, bool flip_sin_to_cos,
                                      float freq_shift) {
  // diffusers get_timestep_embedding (max_period 10000, scale 1).
  const int64_t half = channels / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  const float neg_log = float(-std::log(10000.0));
  for (int64_t k = 0; k < half; ++k) freq[size_t(k)] = std::exp(neg_log * float(k) / (float(half) - freq_shift));
  std::vector<float> emb(t.size() * size_t(channels), 0.f);
  for (size_t n = 0; n < t.size(); ++n) {
    float* row = emb.data() + n * size_t(channels);
    for (int64_t k = 0; k < half; ++k) {
      const float a = t[n] * freq[size_t(k)];
      const float s = std::sin(a), co = std::cos(a);
      row[flip_sin_to_cos ? k + half : k] = s;
      row[flip_sin_to_cos ? k : k + half] = co;
    }
    // odd channel counts are zero-padded at the end, as in diffusers
  }
  return emb;
}

// ---- resnet ----

void Resnet::load(Loader& L, const std::string& p, int64_t in, int64_t out, int64_t temb, int groups_, float eps_,
                  float output_scale_) {
  groups = groups_;
  eps = eps_;
  output_scale = output_scale_;
  norm1 = L.norm(p + ".norm1", in);
  conv1 = L.conv(p + ".conv1", out, in, 3, 1, 1);
  time_proj = L.linear(p + ".time_emb_proj", out, temb);
  norm2 = L.norm(p + ".norm2", out);
  conv2 = L.conv(p + ".conv2", out, out, 3, 1, 1);
  if (in != out) shortcut = L.conv(p + ".conv_shortcut", out, in, 1, 1, 0);
}

// conv1 + time embedding and conv2 + skip each run as one conv2d_fused: the adds ride in the
// convolution's epilogue instead of two more passes over the activations.
Tensor Resnet::operator()(RunCtx& c, const Tensor& x) const {
  Backend& be = c.be;
  Tensor h = be.group_norm(x, groups, norm1.g, norm1.b, eps, /*fuse_silu=*/true);
  const int64_t O = conv1.w.dim(0);
  // time_proj(temb) [B, O] is added per image after conv1's own bias (the order of the reference, so
  // the CPU stays bit-identical): one row for every frame (warmup, B = 1) or one per image (stream,
  // F = 1). conv1.b + time_proj.b are not folded at load: that would move a rounding.
  const Tensor t = time_proj(be, c.temb_silu);
  if (c.B == 1 || c.F == 1) {
    h = be.conv2d_fused(h, conv1.w, &conv1.b, &t, nullptr, conv1.p);
  } else {  // B and F > 1 (not a mode the pipeline runs): the rows broadcast over F frames by an Add
    h = conv1(be, h);
    const int64_t N = h.dim(0), H = h.dim(2), W = h.dim(3);
    h = be.binary(h.reshape({c.B, c.F, O, H * W}), t.reshape({c.B, 1, O, 1}), Binary::Add).reshape({N, O, H, W});
  }
  h = be.group_norm(h, groups, norm2.g, norm2.b, eps, /*fuse_silu=*/true);
  const Tensor skip = shortcut.w.defined() ? shortcut(be, x) : x;
  Tensor y = be.conv2d_fused(h, conv2.w, &conv2.b, nullptr, &skip, conv2.p);  // conv2(h) + skip
  if (output_scale != 1.f) y = be.unary(y, Unary::Affine, 1.f / output_scale, 0.f);
  return y;
}

// ---- spatial transformer ----

// [W_q; W_k; W_v] as one weight [3C, C] on the weights' backend; the three are released by the
// caller (so a model holds each weight once; the load peak grows by one layer's three weights).
static Linear pack_qkv(const Linear& q, const Linear& k, const Linear& v) {
  L2D_ASSERT(q.w.shape() == k.w.shape() && q.w.shape() == v.w.shape() && !q.b.defined());
  return Linear{q.w.backend()->concat({q.w, k.w, v.w}, 0), Tensor()};
}

void Attention::load(Loader& L, const std::string& p, int64_t dim, int64_t context_dim, int heads_, bool packed_qkv) {
  heads = heads_;
  q = L.linear(p + ".to_q", dim, dim, false);
  k = L.linear(p + ".to_k", dim, context_dim, false);
  v = L.linear(p + ".to_v", dim, context_dim, false);
  out = L.linear(p + ".to_out.0", dim, dim, true);
  if (packed_qkv) {
    L2D_ASSERT(dim == context_dim);
    qkv = pack_qkv(q, k, v);
    q = k = v = Linear{};
  }
}

void SpatialTransformer::load(Loader& L, const std::string& p, int64_t ch, int64_t context_dim, int heads, int groups_,
                              bool linear_projection) {
  if (ch % heads != 0) fail(L2D_ERR_FORMAT, "unet: ", p, " has ", ch, " channels, not divisible by ", heads, " heads");
  groups = groups_;
  // The 1x1 convolution form as a linear layer on tokens (its weight viewed as [ch, ch]).
  const auto projection = [&](const std::string& name) {
    if (linear_projection) return L.linear(name, ch, ch);
    const Conv conv = L.conv(name, ch, ch, 1, 1, 0);
    return Linear{conv.w.reshape({ch, ch}), conv.b};
  };
  norm = L.norm(p + ".norm", ch);
  proj_in = projection(p + ".proj_in");
  const std::string b = p + ".transformer_blocks.0";
  norm1 = L.norm(b + ".norm1", ch);
  attn1.load(L, b + ".attn1", ch, ch, heads, /*packed_qkv=*/true);
  norm2 = L.norm(b + ".norm2", ch);
  attn2.load(L, b + ".attn2", ch, context_dim, heads);
  norm3 = L.norm(b + ".norm3", ch);
  ff_in = L.linear(b + ".ff.net.0.proj", 8 * ch, ch);
  ff_out = L.linear(b + ".ff.net.2", ch, 4 * ch);
  proj_out = projection(p + ".proj_out");
}

Tensor SpatialTransformer::operator()(RunCtx& c, const Tensor& x) const {
  Backend& be = c.be;
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor h = proj_in(be, be.group_norm_tokens(x, groups, norm.g, norm.b, 1e-6f, false));  // [N, HW, C]

  Tensor n = be.layer_norm(h, norm1.g, norm1.b, 1e-5f);
  Tensor a = be.self_attention(attn1.qkv(be, n), attn1.heads, AttnMask::None);
  h = attn1.out.add(be, a, h);

  n = be.layer_norm(h, norm2.g, norm2.b, 1e-5f);
  Tensor ck, cv;
  if (c.context_kv && !c.context_kv->empty()) {
    ck = c.context_kv->k.at(context_layer);
    cv = c.context_kv->v.at(context_layer);
  } else {
    ck = context_k(be, c.context);
    cv = context_v(be, c.context);
  }
  L2D_ASSERT(ck.ndim() == 3 && (ck.dim(0) == 1 || ck.dim(0) == N) && ck.dim(2) == C && cv.shape() == ck.shape());
  a = be.attention(attn2.q(be, n), ck, cv, attn2.heads, AttnMask::None);
  h = attn2.out.add(be, a, h);

  n = be.layer_norm(h, norm3.g, norm3.b, 1e-5f);
  h = ff_out.add(be, be.linear_geglu(n, ff_in.w, ff_in.b.defined() ? &ff_in.b : nullptr), h);

  return proj_out.to_image(be, h, x, H, W);
}

// ---- motion module ----

void MotionModule::load(Loader& L, const std::string& p, int64_t ch, const MotionConfig& m, int level_,
                        size_t& next_cache) {
  level = level_;
  groups = m.norm_groups;
  if (ch % groups != 0 || ch / m.heads / m.dim_div < 1)
    fail(L2D_ERR_FORMAT, "unet: motion module ", p, " cannot split ", ch, " channels into ", groups, " groups / ",
         m.heads, " heads");
  inner = int64_t(m.heads) * (ch / m.heads / m.dim_div);
  const std::string t = p + ".temporal_transformer";
  norm = L.norm(t + ".norm", ch);
  Backend& backend = *norm.g.backend();
  proj_in = L.linear(t + ".proj_in", inner, ch);
  const std::vector<float> pe_host = sinusoidal_pe(m.max_len, inner);
  for (int bi = 0; bi < m.transformer_blocks; ++bi) {
    const std::string b = t + ".transformer_blocks." + std::to_string(bi);
    Block blk;
    for (int ai = 0; ai < m.attention_blocks; ++ai) {
      const std::string a = b + ".attention_blocks." + std::to_string(ai);
      TemporalAttention ta;
      ta.heads = m.heads;
      const Linear q = L.linear(a + ".to_q", inner, inner, false);
      const Linear k = L.linear(a + ".to_k", inner, inner, false);
      const Linear v = L.linear(a + ".to_v", inner, inner, false);
      ta.out = L.linear(a + ".to_out.0", inner, inner, true);
      // The sinusoidal buffer: the checkpoint's copy when it has one (shape-checked), else computed.
      Tensor pe;
      const std::string pe_name = a + ".pos_encoder.pe";
      if (L.raw().has(pe_name)) pe = L.raw().get(pe_name, {1, m.max_len, inner}).reshape({m.max_len, inner});
      else pe = backend.from_host(HostTensor::from_f32({m.max_len, inner}, pe_host.data()));
      ta.qpe = backend.linear(pe, q.w, nullptr);
      ta.kpe = backend.linear(pe, k.w, nullptr);
      ta.vpe = backend.linear(pe, v.w, nullptr);
      ta.qkv = pack_qkv(q, k, v);  // q, k, v are released at the end of this scope
      ta.cache_layer = next_cache++;
      blk.norms.push_back(L.norm(b + ".norms." + std::to_string(ai), inner));
      blk.attn.push_back(std::move(ta));
    }
    blk.ff_norm = L.norm(b + ".ff_norm", inner);
    blk.ff_in = L.linear(b + ".ff.net.0.proj", 8 * inner, inner);
    blk.ff_out = L.linear(b + ".ff.net.2", inner, 4 * inner);
    blocks.push_back(std::move(blk));
  }
  proj_out = L.linear(t + ".proj_out", ch, inner);
}

Tensor MotionModule::operator()(RunCtx& c, const Tensor& x) const {
  Backend& be = c.be;
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), P = H * W;
  L2D_ASSERT(N == c.B * c.F && c.cache != nullptr);
  Tensor h = be.group_norm_tokens(x, groups, norm.g, norm.b, 1e-6f, false);  // [N, P, C], n = b*F + f
  h = proj_in(be, h.reshape({c.B, c.F, P, C}));                               // [B, F, P, inner]
  for (const Block& blk : blocks) {
    for (size_t ai = 0; ai < blk.attn.size(); ++ai) {
      const TemporalAttention& ta = blk.attn[ai];
      L2D_ASSERT(c.cache->spec(ta.cache_layer).pixels == P && c.cache->spec(ta.cache_layer).channels == inner);
      Tensor n = be.layer_norm(h, blk.norms[ai].g, blk.norms[ai].b, 1e-5f);
      if (c.mode == Mode::Warmup) {
        // Every pixel is a sequence over the F frames: [(b d), f, c] with b = 1.
        L2D_ASSERT(c.B == 1);
        Tensor seq = be.permute(n, {0, 2, 1, 3}).reshape({P, c.F, inner});
        const Tensor qkv = ta.qkv(be, seq);  // [P, F, 3 inner]
        Tensor q = be.slice(qkv, 2, 0, inner), k = be.slice(qkv, 2, inner, 2 * inner);
        Tensor v = be.slice(qkv, 2, 2 * inner, 3 * inner);
        c.cache->write_frames(ta.cache_layer, c.warmup_row, k, v);  // PE-free K/V -> slots 0..F-1
        q = be.binary(q, be.slice(ta.qpe, 0, 0, c.F), Binary::Add);
        k = be.binary(k, be.slice(ta.kpe, 0, 0, c.F), Binary::Add);
        v = be.binary(v, be.slice(ta.vpe, 0, 0, c.F), Binary::Add);
        Tensor o = ta.out(be, be.attention(q, k, v, ta.heads, AttnMask::None));  // [P, F, inner]
        o = be.permute(o.reshape({1, P, c.F, inner}), {0, 2, 1, 3});
        h = be.binary(o, h, Binary::Add);  // (the permute sits between out and the residual here)
      } else {
        L2D_ASSERT(c.F == 1 && c.state != nullptr);
        Tensor rows = n.reshape({c.B, P, inner});
        Tensor o = be.stream_temporal_attention_qkv(ta.qkv(be, rows), c.cache->cache(ta.cache_layer), ta.qpe,
                                                    ta.kpe, ta.vpe, c.state->pe_idx, c.state->update_idx,
                                                    c.state->bias, ta.heads);
        h = ta.out.add(be, o, h.reshape({c.B, P, inner})).reshape({c.B, 1, P, inner});
      }
    }
    Tensor n = be.layer_norm(h, blk.ff_norm.g, blk.ff_norm.b, 1e-5f);
    h = blk.ff_out.add(be, be.linear_geglu(n, blk.ff_in.w, blk.ff_in.b.defined() ? &blk.ff_in.b : nullptr), h);
  }
  return proj_out.to_image(be, h.reshape({N, P, inner}), x, H, W);
}

// ---- depth mapping network ----

void MappingNetwork::load(Loader& L, const std::string& p, int64_t in, int64_t out) {
  // Channels (16, 32, 96, 256 in the original) are read from the checkpoint, chained and checked.
  WeightLoader& w = L.raw();
  const int64_t c0 = w.shape_of(p + ".conv_in.weight").at(0);
  conv_in = L.conv(p + ".conv_in", c0, in, 3, 1, 1);
  int64_t ch = c0;
  for (int i = 0; w.has(p + ".blocks." + std::to_string(i) + ".weight"); ++i) {
    const std::string name = p + ".blocks." + std::to_string(i);
    const int64_t o = w.shape_of(name + ".weight").at(0);
    blocks.push_back(L.conv(name, o, ch, 3, 1, 1));
    ch = o;
  }
  conv_out = L.conv(p + ".conv_out", out, ch, 3, 1, 1);
}

Tensor MappingNetwork::operator()(Backend& be, const Tensor& x) const {
  Tensor h = be.unary(conv_in(be, x), Unary::Silu);
  for (const Conv& b : blocks) h = be.unary(b(be, h), Unary::Silu);
  return conv_out(be, h);
}

}  // namespace l2d::unet
