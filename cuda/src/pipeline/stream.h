// stream.h: the live streaming pipeline of Live2Diff (StreamAnimateDiffusionDepth), natively:
// warm-up on 8 frames (bi-directional temporal attention, fills the sink slots of every cache row),
// then one UNet batch per input frame holding T denoising steps (StreamDiffusion's denoising batch):
// row 0 is the new frame at the noisiest timestep, rows 1..T-1 the latent buffer carried from the
// previous call. Depth (MiDaS -> normalised 3-channel map -> TAESD) conditions every row.
//
// Latency: the output of push(i) is the most-denoised row, which entered as frame i-(T-1); the
// first T-1 streamed outputs come from the zero-initialised buffers (the original returns them,
// test.py drops them): push_frame() reports them as not ready; the "push" method (debug/golden)
// returns them all.
//
// Noise: Philox normal draws with the golden README's semantic ids (seed per stream): stream 1
// draw i = encode noise of video frame i, stream 2 draw idx = warm-up re-noising of step idx,
// stream 3 draw i = latent-buffer re-noising after frame i.
//
// Methods (l2d_session_run on a stream): "set_prompt" (prompt_embeds [1, L, C]), "warmup"
// (frames U8 [8, H', W', 3|4]), "push" (frame U8 [H', W', 3|4]), "get_state" (KV caches and
// bookkeeping, like the unet session), "schedule" (scheduler constants), "reset", "frame_path"
// (I32 [1] each: "graph" 1 while a captured step exists, counters "eager", "captures", "replays" of
// the push_frame regions so far; "path" U8 [n]: frame_path() as text).
// With {"debug": true} in the config, warmup/push also return the intermediates the golden
// pipeline case records (x_t_latent, depth_latent, midas_depth_*, unet_in_*, unet_noise_pred,
// x0_pred_to_decode).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/json.h"
#include "../kv_cache/kv_cache.h"
#include "../models/midas/midas.h"
#include "../models/model.h"
#include "../models/taesd/taesd.h"
#include "../models/unet/unet_model.h"
#include "frame_prep.h"
#include "lcm_scheduler.h"

namespace l2d {

class LiveStream final : public Session {
 public:
  LiveStream(const unet::UnetModel& unet, const Taesd& vae, const midas::Midas& depth, const Json& config);

  void run(const std::string& method, TensorMap& io) override;

  // The hot path: one frame in (any size, RGB/RGBA), maybe one frame out (RGB, stream size).
  // Returns true when out_rgb was written. Implicit warm-up: the first 8 frames are collected and
  // warmed up together (no output), then streaming starts.
  bool push_frame(const FrameView& frame, uint8_t* out_rgb);

  int64_t width() const { return width_; }
  int64_t height() const { return height_; }
  // How push_frame runs the step: "graph" (one captured region replayed per frame), "eager", or
  // "eager: <why the capture failed>". For stats and tests.
  std::string frame_path() const;

  LiveStream(const LiveStream&) = delete;
  LiveStream& operator=(const LiveStream&) = delete;
  ~LiveStream() override;

 private:
  void set_prompt(const HostTensor& embeds);
  void reset();
  // frames: N fitted frames, contiguous u8 [N, H, W, channels].
  // Both return the output images [N, 3, H, W] in [0, 1].
  Tensor warmup(const uint8_t* frames, int64_t n, int channels, TensorMap* debug);
  Tensor step(const uint8_t* frame, int channels, TensorMap* debug);
  // The step from the frame as a float image [1, 3, H, W] in [0, 1]: step_device, then step_host.
  Tensor step_image(const Tensor& image01, TensorMap* debug);
  // The device work of a step (no host state changes: it is what a graph replays).
  Tensor step_device(const Tensor& image01, TensorMap* debug);
  // The host bookkeeping of a step (KV-cache rule, frame counters), once per frame.
  void step_host();
  // The hot path after warm-up: the frame goes up into frame_in_, the region below runs (eagerly
  // on the first frame of a geometry, captured on the second, replayed after), the bytes come down.
  bool stream_frame(const FrameView& frame, uint8_t* out_rgb);
  // stream_frame in two halves, so the similar-image filter can decide in between: stage_frame
  // sizes the fixed buffers for the frame's geometry and uploads it into frame_in_;
  // run_staged_frame runs (or replays) the region and downloads the output bytes.
  // prefitted: the region reads the image the similar-image filter already fitted (in
  // sim_prev_fitted_) instead of fitting frame_in_ again.
  void stage_frame(const FrameView& frame, bool prefitted = false);
  bool run_staged_frame(uint8_t* out_rgb);
  // Everything between the uploaded frame and the output bytes (frame_out_): fit (unless
  // region_geom_.prefitted), encodes, MiDaS, UNet, x0, re-noising, decode, uint8 conversion.
  // Reads only fixed buffers and region_geom_.
  void frame_region();
  void drop_capture();
  // The addresses of the buffers a captured step reads and writes in place (frame in/out, UNet
  // inputs, prompt rows, counters, KV caches and bookkeeping): recorded at capture and compared
  // before every replay, so a buffer reallocated without dropping the graph is an error, not a
  // silently stale replay.
  // (Fills `out`, reusing its capacity: no allocation per frame.)
  void fixed_addresses(std::vector<const void*>& out);
  Tensor encode_latent(const Tensor& images, int64_t first_frame, TensorMap* debug);
  void set_frame_counter(int64_t index);
  Tensor encode_depth(const Tensor& images, TensorMap* debug);
  Tensor depth_image(const Tensor& images, TensorMap* debug);  // [N, 3, H, W] in [-1, 1]
  Tensor scalar(float v) const;
  Tensor decode_to_unit(const Tensor& x0);
  bool similar_skip(double sim);  // the filter's rule, given the similarity
  bool similar_to_previous(const uint8_t* frame, int channels);  // host path: fitted bytes
  bool similar_on_device(const Tensor& fitted, int channels);      // device path: fitted image

  Backend& be_;
  const unet::UnetModel& unet_;
  const Taesd& vae_;
  const midas::Midas& depth_;
  int64_t width_, height_, lh_, lw_;
  uint32_t seed_;
  bool debug_;
  LcmSchedule sched_;
  int T_;
  KvCache cache_;
  Tensor prompt_, prompt_rows_;     // [1, L, C] and [T, L, C]
  unet::ContextKv context_kv_;      // every cross-attention layer's K/V of prompt_ (set_prompt)
  Tensor row_alpha_, row_beta_, row_c_out_, row_c_skip_;  // [T, 1, 1, 1]
  Tensor alpha0_, beta0_;        // [1]: the noisiest step's scalars (encode)
  Tensor stream_t_features_;     // [T, C0]: timestep features of the streaming batch (constant)
  // The UNet inputs [T, 4, h, w]: row 0 the new frame's latent / depth latent, rows 1..T-1 the
  // carried buffers. Allocated once and updated in place (write_slice), so their device addresses
  // never change: what a captured CUDA graph of the step needs (issue 15).
  Tensor sample_, depth_in_;
  // frame_index_ on the device (I32 [1]): the Philox draw index of the step's noise, advanced by
  // the step itself, so a captured step needs no per-frame host argument.
  Tensor frame_counter_;
  bool warmed_up_ = false;
  int64_t frame_index_ = 0;  // video index of the next frame (warm-up frames are 0..7)
  int64_t streamed_ = 0;     // streaming calls so far
  std::vector<uint8_t> pending_;  // implicit warm-up: fitted frames collected so far
  int pending_channels_ = 3;
  std::vector<uint8_t> fit_scratch_;
  // similar-image filter (off unless threshold < 1)
  double sim_threshold_ = 1.0;
  int sim_max_skip_ = 10, sim_skipped_ = 0;
  std::vector<uint8_t> sim_prev_;  // host path: the previous kept frame's fitted bytes
  // Device path: the last kept frame's fitted image [1, 3, H, W], a fixed buffer written in place:
  // the similarity reads it as the previous frame, and the region of the frame just kept reads it
  // as its input (so a kept frame is fitted once, not again inside the region).
  Tensor sim_prev_fitted_;
  int sim_prev_channels_ = 0;      // ... and its channel count (0: none kept)
  std::vector<uint8_t> last_rgb_;  // last output frame (similar-image filter only)
  // The per-frame path's fixed buffers: the raw uploaded frame (grown, never shrunk, so its
  // address changes only when a larger frame comes) and the output bytes [H, W, 3].
  Tensor frame_in_, frame_out_;
  struct Geometry {
    int64_t h = 0, w = 0;
    int channels = 0;
    bool prefitted = false;  // the region starts from sim_prev_fitted_ (similar-image filter, device path)
    bool operator==(const Geometry& o) const {
      return h == o.h && w == o.w && channels == o.channels && prefitted == o.prefitted;
    }
  };
  Geometry region_geom_;        // the frame geometry frame_region() is set up (and captured) for
  int64_t graph_ = 0;           // the captured region (0: none)
  std::vector<const void*> graph_addresses_, addresses_now_;  // fixed_addresses() at capture / now
  bool region_warm_ = false;    // one eager frame ran at region_geom_ (lazy tables, autotuning done)
  bool capture_off_ = false;    // the backend runs eagerly, or a capture failed: no more attempts
  std::string capture_note_;    // why capture_off_ (empty: not supported or switched off)
  // How the streamed frames ran ("frame_path" method): eager regions, captures, replays.
  int64_t eager_regions_ = 0, captures_ = 0, replays_ = 0;
};

}  // namespace l2d
