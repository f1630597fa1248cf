// kv_cache.h: the KV caches of Live2Diff's temporal attention layers and the per-row bookkeeping
// that decides which slot a streamed frame writes and which slots it may attend to. It knows
// nothing of the UNet: a layer is just (pixels P, channels C).
//
// Layout. Per layer one backend tensor `[T, 2, P, W, C]`: T rows = denoising steps (row r is
// used by the batch row of step r), K then V, P pixels of the layer's level (row-major y*w+x),
// W = window slots (16), C channels. Values are PE-FREE projections (W_k x, W_v x); positional
// encodings are added at read time from pe_idx, so re-positioning a frame never rewrites a cache.
//
// Invariants.
//  * Slots 0..S-1 (S = sink size, 8) of row r hold the warmup frames, written once by
//    write_frames() (warmup call of step r); streaming never rewrites them because update_idx
//    only ever points at slots >= S (init: S and S+1; then the count of valid slots, which is
//    >= S+1, or the argmax of pe_idx, which is in the rolling part once all slots are valid).
//  * A streaming call first writes the new frame's K/V into slot update_idx[r] of row r (done by
//    Backend::stream_temporal_attention, in place), then attends over all W slots with
//    attn_bias[r] added to the scores: slot s is valid (may be attended) iff attn_bias[r, s] == 0.
//    pe_idx[r, s] is the PE position of the frame in slot s; sink slots keep PE 0..S-1.
//  * Bookkeeping (golden README item 8, exactly as the original `initialize_attn_bias_pe_and_update_idx`
//    / `update_attn_bias`): init attn_bias[r, :S] = 0, attn_bias[0, S] = 0, rest -inf;
//    pe_idx[r] = 0..W-1; update_idx = [S, S+1, S, S, ...]. After every streaming call, per row:
//    if some slot is still masked: update_idx[r] = count(attn_bias[r] == 0); else roll
//    pe_idx[r, S:] by +1 and update_idx[r] = argmax(pe_idx[r]); then
//    attn_bias[r, :min(count_zero + 1, W)] = 0 (count taken before that assignment).
//  * reset() zeroes every cache in place (no reallocation: device pointers stay valid for
//    captured graphs) and re-initialises the bookkeeping. Caches are never copied as a whole
//    except by the explicit get/set state calls used by tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/backend.h"

namespace l2d {

class KvCache {
 public:
  struct LayerSpec {
    int64_t pixels = 0;
    int64_t channels = 0;
  };
  // The bookkeeping of one streaming call, as backend tensors shared by every layer.
  struct DeviceState {
    Tensor pe_idx;      // I32 [T, W]
    Tensor update_idx;  // I32 [T]
    Tensor bias;        // float [T, W], 0 or -inf
  };

  KvCache(Backend& backend, int steps, int window, int sink, std::vector<LayerSpec> layers);

  // "kv_cache_XX": the name of layer XX in tensor maps (golden case naming, two digits).
  static std::string layer_name(size_t layer);

  int steps() const { return steps_; }
  int window() const { return window_; }
  int sink() const { return sink_; }
  size_t num_layers() const { return caches_.size(); }
  const LayerSpec& spec(size_t layer) const { return specs_.at(layer); }
  Shape cache_shape(size_t layer) const;
  // The cache of a layer (written in place by the streaming op).
  Tensor& cache(size_t layer) { return caches_.at(layer); }

  // Warmup: k, v [P, F, C] (PE-free) go to slots 0..F-1 of row `row` (in place, write_slice).
  void write_frames(size_t layer, int row, const Tensor& k, const Tensor& v);

  // Bookkeeping of the next streaming call (host copies and the uploaded tensors).
  const std::vector<float>& attn_bias() const { return attn_bias_; }
  const std::vector<int32_t>& pe_idx() const { return pe_idx_; }
  const std::vector<int32_t>& update_idx() const { return update_idx_; }
  // The bookkeeping as device tensors: ONE persistent set, allocated once and kept equal to the
  // host copies (uploaded in place by init/set_bookkeeping, advanced on the device by advance()),
  // so its addresses never change and a streaming call copies nothing (CUDA-graph capture).
  DeviceState upload_state() const { return state_; }
  // Applies the update rule after a streaming call, to the host copies and (Backend::kv_advance,
  // stream-ordered after the call's kernels) to the device state.
  void advance();
  // advance() in its two halves, for a captured step: the device half (kv_advance) belongs to the
  // captured region, the host half runs once per frame outside it.
  void advance_device();
  void advance_host();
  // Zeroes the caches and re-initialises the bookkeeping.
  void reset();
  void init_bookkeeping();

  // Replaces the bookkeeping (checked: shapes, bias values 0/-inf, pe_idx in range, update_idx
  // in the rolling part of the window).
  void set_bookkeeping(const std::vector<float>& attn_bias, const std::vector<int64_t>& pe_idx,
                       const std::vector<int64_t>& update_idx);
  // Host copies of caches for tests; set_cache writes slots 0..k-1 when given [T, 2, P, k, C].
  HostTensor get_cache(size_t layer);
  void set_cache(size_t layer, const HostTensor& value);

 private:
  Backend& be_;
  int steps_, window_, sink_;
  std::vector<LayerSpec> specs_;
  std::vector<Tensor> caches_;
  std::vector<float> attn_bias_;     // [T, W]
  std::vector<int32_t> pe_idx_;      // [T, W]
  std::vector<int32_t> update_idx_;  // [T]
  DeviceState state_;  // the device copy of the bookkeeping (see upload_state)
  void upload_in_place();
};

}  // namespace l2d
