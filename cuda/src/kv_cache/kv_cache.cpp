#include "kv_cache.h"

#include "kv_rule.h"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <limits>

namespace l2d {

std::string KvCache::layer_name(size_t layer) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "kv_cache_%02zu", layer);
  return buf;
}

KvCache::KvCache(Backend& backend, int steps, int window, int sink, std::vector<LayerSpec> layers)
    : be_(backend), steps_(steps), window_(window), sink_(sink), specs_(std::move(layers)) {
  L2D_REQUIRE(steps >= 1, "the KV cache needs at least one denoising step, got ", steps);
  L2D_REQUIRE(sink >= 1 && window > sink, "the KV-cache window (", window, ") must exceed the sink size (", sink, ")");
  L2D_REQUIRE(steps == 1 || window >= sink + 2, "a KV-cache window of ", window, " with sink ", sink,
              " cannot hold the initial update slots of ", steps, " steps");
  // Refuse sizes whose caches cannot fit before touching memory (a huge stream must be a clear
  // error, not an out-of-memory kill halfway through zero-filling).
  double bytes = 0;
  for (size_t i = 0; i < specs_.size(); ++i)
    bytes += double(shape_numel(cache_shape(i))) * double(storage_size(be_.float_dtype()));
  constexpr double kMaxCacheBytes = 16.0 * (1ull << 30);
  L2D_REQUIRE(bytes <= kMaxCacheBytes, "the KV caches of this stream would need ", bytes / double(1ull << 30),
              " GiB (more than 16 GiB): use a smaller stream size or fewer denoising steps");
  caches_.reserve(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) caches_.push_back(be_.zeros(cache_shape(i), be_.float_dtype()));
  init_bookkeeping();
}

Shape KvCache::cache_shape(size_t layer) const {
  const LayerSpec& s = specs_.at(layer);
  return {steps_, 2, s.pixels, window_, s.channels};
}

void KvCache::write_frames(size_t layer, int row, const Tensor& k, const Tensor& v) {
  const LayerSpec& s = specs_.at(layer);
  L2D_REQUIRE(row >= 0 && row < steps_, "denoising step ", row, " is outside 0..", steps_ - 1);
  L2D_ASSERT(k.ndim() == 3 && k.dim(0) == s.pixels && k.dim(2) == s.channels && k.shape() == v.shape());
  L2D_REQUIRE(k.dim(1) <= window_, "cannot cache ", k.dim(1), " frames in a window of ", window_);
  const Shape one{1, 1, s.pixels, k.dim(1), s.channels};
  Tensor& c = caches_.at(layer);
  be_.write_slice(c, k.reshape(one), {row, 0, 0, 0, 0});
  be_.write_slice(c, v.reshape(one), {row, 1, 0, 0, 0});
}

void KvCache::init_bookkeeping() {
  const float inf = std::numeric_limits<float>::infinity();
  attn_bias_.assign(size_t(steps_) * size_t(window_), -inf);
  pe_idx_.assign(size_t(steps_) * size_t(window_), 0);
  update_idx_.assign(size_t(steps_), sink_);
  for (int r = 0; r < steps_; ++r) {
    for (int s = 0; s < window_; ++s) {
      pe_idx_[size_t(r * window_ + s)] = s;
      if (s < sink_) attn_bias_[size_t(r * window_ + s)] = 0.f;
    }
  }
  attn_bias_[size_t(sink_)] = 0.f;  // row 0: the sink plus its first streamed frame
  if (steps_ > 1) update_idx_[1] = sink_ + 1;
  upload_in_place();
}

void KvCache::advance() {
  advance_host();
  advance_device();
}

void KvCache::advance_host() {
  for (int r = 0; r < steps_; ++r)
    kv_advance_row(attn_bias_.data() + size_t(r) * size_t(window_), pe_idx_.data() + size_t(r) * size_t(window_),
                   update_idx_.data() + r, window_, sink_);
}

void KvCache::advance_device() { be_.kv_advance(state_.bias, state_.pe_idx, state_.update_idx, sink_); }

void KvCache::upload_in_place() {
  const int64_t T = steps_, W = window_;
  if (!state_.bias.defined()) {
    state_.pe_idx = be_.zeros({T, W}, DType::I32);
    state_.update_idx = be_.zeros({T}, DType::I32);
    state_.bias = be_.zeros({T, W}, be_.float_dtype());
  }
  std::vector<int64_t> pe(pe_idx_.begin(), pe_idx_.end()), up(update_idx_.begin(), update_idx_.end());
  be_.write_slice(state_.pe_idx, be_.from_host(HostTensor::from_i64({T, W}, pe.data())), {0, 0});
  be_.write_slice(state_.update_idx, be_.from_host(HostTensor::from_i64({T}, up.data())), {0});
  be_.write_slice(state_.bias, be_.from_host(HostTensor::from_f32({T, W}, attn_bias_.data())), {0, 0});
}

void KvCache::reset() {
  for (Tensor& c : caches_) be_.fill(c, 0.f);
  init_bookkeeping();
}

void KvCache::set_bookkeeping(const std::vector<float>& attn_bias, const std::vector<int64_t>& pe_idx,
                              const std::vector<int64_t>& update_idx) {
  const size_t tw = size_t(steps_) * size_t(window_);
  L2D_REQUIRE(attn_bias.size() == tw && pe_idx.size() == tw && update_idx.size() == size_t(steps_),
              "KV-cache bookkeeping must be attn_bias/pe_idx [", steps_, ", ", window_, "] and update_idx [", steps_,
              "]");
  for (size_t i = 0; i < tw; ++i) {
    L2D_REQUIRE(attn_bias[i] == 0.f || (std::isinf(attn_bias[i]) && attn_bias[i] < 0),
                "attn_bias values must be 0 or -inf, got ", attn_bias[i]);
    L2D_REQUIRE(pe_idx[i] >= 0 && pe_idx[i] < 1 << 20, "pe_idx value ", pe_idx[i], " is out of range");
  }
  for (int64_t u : update_idx)
    L2D_REQUIRE(u >= sink_ && u < window_, "update_idx value ", u, " is outside the rolling slots ", sink_, "..",
                window_ - 1);
  attn_bias_ = attn_bias;
  pe_idx_.assign(pe_idx.begin(), pe_idx.end());
  update_idx_.assign(update_idx.begin(), update_idx.end());
  upload_in_place();
}

HostTensor KvCache::get_cache(size_t layer) { return be_.to_host(caches_.at(layer)); }

void KvCache::set_cache(size_t layer, const HostTensor& value) {
  Shape full = cache_shape(layer);
  Shape partial = full;
  partial[3] = value.shape.size() == 5 ? value.shape[3] : -1;
  if (value.shape != full && (value.shape != partial || partial[3] < 1 || partial[3] > window_))
    fail(L2D_ERR_INVALID_ARGUMENT, "KV cache ", layer, " must have shape ", shape_str(full), " (or slots 0..k-1: ",
         shape_str(Shape{full[0], 2, full[2], -1, full[4]}), "), got ", shape_str(value.shape));
  Tensor src = be_.from_host(value);
  be_.write_slice(caches_.at(layer), src, {0, 0, 0, 0, 0});
}

}  // namespace l2d
