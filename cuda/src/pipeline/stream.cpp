#include "stream.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "../core/config.h"
#include "../core/philox.h"

namespace l2d {

namespace {

constexpr int kDepthSize = 384;  // MiDaS DPT-Hybrid input (encode_depth resizes to 384x384)

// Stream options are per-call arguments: a bad one is L2D_ERR_INVALID_ARGUMENT naming the key.
ConfigReader stream_options(const Json& config) {
  return ConfigReader(config, "stream config", L2D_ERR_INVALID_ARGUMENT);
}

// width/height: checked (and a multiple of the VAE factor) before anything is sized by them.
int64_t stream_side(const Json& config, const char* key, int vae_factor) {
  const ConfigReader c = stream_options(config);
  const int64_t v = c.integer(key, 512, 1, 8192);
  c.require_divisible(key, v, "the taesd downsampling factor", vae_factor);
  return v;
}

}  // namespace

LiveStream::LiveStream(const unet::UnetModel& unet, const Taesd& vae, const midas::Midas& depth, const Json& config)
    : be_(unet.backend()),
      unet_(unet),
      vae_(vae),
      depth_(depth),
      width_(stream_side(config, "width", vae.downsampling_factor())),
      height_(stream_side(config, "height", vae.downsampling_factor())),
      lh_(0),
      lw_(0),
      seed_(uint32_t(stream_options(config).integer("seed", 0, 0, UINT32_MAX))),
      debug_(stream_options(config).boolean("debug", false)),
      sched_(make_lcm_schedule(stream_options(config).has("scheduler") ? config["scheduler"] : config)),
      T_(sched_.steps()),
      cache_(be_, T_, unet.config().motion.window, unet.config().motion.sink,
             unet.cache_specs(height_ / vae.downsampling_factor(), width_ / vae.downsampling_factor())) {
  const int f = vae.downsampling_factor();
  lh_ = height_ / f;
  lw_ = width_ / f;
  // The scheduler config may also sit at the top level (t_index_list, strength, steps).
  if (config.has("scheduler")) {
    for (const char* key : {"t_index_list", "strength", "steps"})
      L2D_REQUIRE(!config.has(key), "stream config: put \"", key, "\" inside \"scheduler\" or outside, not both");
  }
  std::vector<float> a(sched_.alpha_prod_t_sqrt), b(sched_.beta_prod_t_sqrt), co(sched_.c_out), cs(sched_.c_skip);
  const Shape rows{int64_t(T_), 1, 1, 1};
  row_alpha_ = be_.from_host(HostTensor::from_f32(rows, a.data()));
  row_beta_ = be_.from_host(HostTensor::from_f32(rows, b.data()));
  row_c_out_ = be_.from_host(HostTensor::from_f32(rows, co.data()));
  row_c_skip_ = be_.from_host(HostTensor::from_f32(rows, cs.data()));
  alpha0_ = scalar(sched_.alpha_prod_t_sqrt[0]);
  beta0_ = scalar(sched_.beta_prod_t_sqrt[0]);
  {
    std::vector<float> t;
    for (int64_t v : sched_.timesteps) t.push_back(float(v));
    stream_t_features_ = unet_.timestep_features(t);
  }
  const ConfigReader options = stream_options(config);
  if (options.has("similar_image_filter")) {
    const ConfigReader s = options.object("similar_image_filter");
    sim_threshold_ = s.number("threshold", 0.98, 0.0, 1.0);
    if (sim_threshold_ <= 0) s.error("threshold", "must be in (0, 1], got ", sim_threshold_);
    sim_max_skip_ = int(s.integer("max_skip_frames", 10, 0, 1 << 30));
  }
  reset();
}

void LiveStream::set_frame_counter(int64_t index) {
  be_.write_slice(frame_counter_, be_.from_host(HostTensor::from_i64({1}, &index)), {0});
}

Tensor LiveStream::scalar(float v) const { return be_.from_host(HostTensor::from_f32({1}, &v)); }

void LiveStream::reset() {
  cache_.reset();
  if (!sample_.defined()) {
    sample_ = be_.zeros({int64_t(T_), 4, lh_, lw_}, be_.float_dtype());
    depth_in_ = be_.zeros({int64_t(T_), 4, lh_, lw_}, be_.float_dtype());
    frame_counter_ = be_.zeros({1}, DType::I32);
  } else {  // in place: the addresses stay valid
    be_.fill(sample_, 0.f);
    be_.fill(depth_in_, 0.f);
    set_frame_counter(0);
  }
  warmed_up_ = false;
  frame_index_ = 0;
  streamed_ = 0;
  pending_.clear();
  sim_prev_.clear();
  sim_prev_channels_ = 0;
  sim_skipped_ = 0;
  last_rgb_.clear();
}

LiveStream::~LiveStream() { drop_capture(); }

// The one place that refreshes prompt-derived device buffers. A captured step reads prompt_rows_
// at its address, so a prompt of the same length is written IN PLACE and the graph stays valid;
// another length reallocates and drops the graph (the next frames re-capture).
void LiveStream::set_prompt(const HostTensor& embeds) {
  const int64_t cx = unet_.config().cross_attention_dim;
  L2D_REQUIRE(embeds.shape.size() == 3 && embeds.shape[0] >= 1 && embeds.shape[2] == cx,
              "prompt_embeds must be [1, L, ", cx, "], got ", shape_str(embeds.shape));
  Tensor all = be_.from_host(embeds);
  const Tensor row = embeds.shape[0] == 1 ? all : be_.slice(all, 0, 0, 1);  // the original uses row 0 only
  const Shape rows_shape{int64_t(T_), embeds.shape[1], cx};
  if (!prompt_rows_.defined() || prompt_rows_.shape() != rows_shape) {
    drop_capture();
    prompt_rows_ = be_.zeros(rows_shape, be_.float_dtype());
  }
  for (int64_t r = 0; r < T_; ++r) be_.write_slice(prompt_rows_, row, {r, 0, 0});
  prompt_ = T_ == 1 ? prompt_rows_ : be_.slice(prompt_rows_, 0, 0, 1);
  // Cross-attention K/V once per prompt (broadcast over the rows), written into the same tensors
  // when their shapes do not change; a reallocation moves addresses a captured step reads.
  try {
    if (unet_.prepare_context(prompt_, context_kv_)) drop_capture();
  } catch (...) {
    drop_capture();  // a failure midway clears the K/V a captured step reads
    throw;
  }
}

// TAESD-encode [-1, 1] images and add the first (noisiest) step's noise: x_t = a0 * lat + b0 * n,
// noise of frame k = normal([4, h, w], seed, 1, first_frame + k).
Tensor LiveStream::encode_latent(const Tensor& images, int64_t first_frame, TensorMap* debug) {
  const Tensor lat = vae_.encode(images);  // [N, 4, h, w]
  const int64_t n = lat.dim(0);
  std::vector<Tensor> noise;
  for (int64_t k = 0; k < n; ++k)
    noise.push_back(be_.random_normal({1, lat.dim(1), lat.dim(2), lat.dim(3)}, seed_, 1, uint32_t(first_frame + k)));
  const Tensor nz = n == 1 ? noise[0] : be_.concat(noise, 0);
  const Tensor x_t = be_.binary(be_.binary(lat, alpha0_, Binary::Mul), be_.binary(nz, beta0_, Binary::Mul), Binary::Add);
  if (debug) debug->put("x_t_latent", be_.to_host(x_t));
  return x_t;
}

// Live2Diff encode_depth: depth_image, TAESD-encoded (no noise).
Tensor LiveStream::encode_depth(const Tensor& images, TensorMap* debug) {
  const Tensor lat = vae_.encode(depth_image(images, debug));
  if (debug) debug->put("depth_latent", be_.to_host(lat));
  return lat;
}

// The depth image of Live2Diff's encode_depth: bilinear to 384x384, MiDaS, ONE min/max over the
// whole call batch, 3 channels in [-1, 1], bilinear back to the frame size.
Tensor LiveStream::depth_image(const Tensor& images, TensorMap* debug) {
  const int64_t n = images.dim(0);
  const Tensor small = be_.resize_bilinear(images, kDepthSize, kDepthSize, false);
  const Tensor raw = depth_.depth(small);  // [N, 384, 384]
  if (debug) {
    const std::vector<float> v = be_.to_host(raw).to_f32();
    float mn = v[0], mx = v[0];
    for (float x : v) mn = std::min(mn, x), mx = std::max(mx, x);
    debug->put("midas_depth_min", HostTensor::from_f32({1}, &mn));
    debug->put("midas_depth_max", HostTensor::from_f32({1}, &mx));
    std::vector<float> corner;
    for (int64_t i = 0; i < n; ++i)
      for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) corner.push_back(v[size_t((i * kDepthSize + y) * kDepthSize + x)]);
    debug->put("midas_depth_raw_corner", HostTensor::from_f32({n, 8, 8}, corner.data()));
  }
  const Tensor norm = be_.minmax_normalize(raw).reshape({n, 1, kDepthSize, kDepthSize});
  const Tensor rgb = be_.unary(be_.concat({norm, norm, norm}, 1), Unary::Affine, 2.f, -1.f);
  return be_.resize_bilinear(rgb, int(height_), int(width_), false);
}

// decode -> clip(-1, 1) -> (x + 1) / 2, i.e. the [0, 1] frames both wrappers return.
Tensor LiveStream::decode_to_unit(const Tensor& x0) {
  const Tensor img = be_.unary(vae_.decode(x0), Unary::Clamp, -1.f, 1.f);
  return be_.unary(img, Unary::Affine, 0.5f, 0.5f);
}

Tensor LiveStream::warmup(const uint8_t* frames, int64_t n, int channels, TensorMap* debug) {
  const int sink = unet_.config().motion.sink;
  L2D_REQUIRE(n == sink, "warm-up takes exactly ", sink, " frames, got ", n);
  L2D_REQUIRE(prompt_.defined(), "set a prompt before warming up the stream");
  cache_.reset();
  const Tensor images = be_.unary(be_.image_from_u8(frames, n, height_, width_, channels), Unary::Affine, 2.f, -1.f);
  Tensor x_t = encode_latent(images, 0, debug);  // [8, 4, h, w], frames 0..7
  const Tensor depth = encode_depth(images, debug);
  Tensor x0;
  for (int idx = 0; idx < T_; ++idx) {
    unet::RunCtx ctx(be_, unet::Mode::Warmup);
    ctx.B = 1;
    ctx.F = n;
    ctx.cache = &cache_;
    ctx.warmup_row = idx;
    ctx.context = prompt_;
    ctx.context_kv = &context_kv_;
    const Tensor eps = unet_.forward(ctx, x_t, depth, {float(sched_.timesteps[size_t(idx)])});
    // x0 = c_out * ((x_t - beta * eps) / alpha) + c_skip * x_t, with the step's scalars.
    const Tensor pred = be_.binary(be_.binary(x_t, be_.binary(eps, scalar(sched_.beta_prod_t_sqrt[size_t(idx)]), Binary::Mul),
                                              Binary::Sub),
                                   scalar(sched_.alpha_prod_t_sqrt[size_t(idx)]), Binary::Div);
    x0 = be_.binary(be_.binary(pred, scalar(sched_.c_out[size_t(idx)]), Binary::Mul),
                    be_.binary(x_t, scalar(sched_.c_skip[size_t(idx)]), Binary::Mul), Binary::Add);
    if (idx + 1 < T_) {
      // randn_like(x0) in the original's [1, 4, F, h, w] layout, folded to frames.
      const Tensor nz = be_.permute(be_.random_normal({4, n, lh_, lw_}, seed_, 2, uint32_t(idx)), {1, 0, 2, 3});
      x_t = be_.binary(be_.binary(x0, scalar(sched_.alpha_prod_t_sqrt[size_t(idx + 1)]), Binary::Mul),
                       be_.binary(nz, scalar(sched_.beta_prod_t_sqrt[size_t(idx + 1)]), Binary::Mul), Binary::Add);
    }
  }
  if (debug) debug->put("x0_pred_to_decode", be_.to_host(x0));
  warmed_up_ = true;
  frame_index_ = n;
  set_frame_counter(n);
  streamed_ = 0;
  return decode_to_unit(x0);
}

Tensor LiveStream::step(const uint8_t* frame, int channels, TensorMap* debug) {
  L2D_REQUIRE(warmed_up_, "the stream must be warmed up (8 frames) before streaming");
  return step_image(be_.image_from_u8(frame, 1, height_, width_, channels), debug);
}

Tensor LiveStream::step_image(const Tensor& image01, TensorMap* debug) {
  const Tensor out = step_device(image01, debug);
  step_host();
  return out;
}

void LiveStream::step_host() {
  cache_.advance_host();
  ++frame_index_;
  ++streamed_;
}

Tensor LiveStream::step_device(const Tensor& image01, TensorMap* debug) {
  // Device ms per stage when the context profiles (l2d_context_profile); no events in a capture.
  StageTimer stages(be_);
  stages.stage("depth");  // MiDaS and the depth image
  const Tensor image = be_.unary(image01, Unary::Affine, 2.f, -1.f);
  const Tensor depth_rgb = depth_image(image, debug);
  stages.stage("encode");  // both TAESD encodes and the frame's noise
  // The frame and its depth image in ONE TAESD encode [2, 3, H, W]: the encoder is convolutions,
  // ReLUs, adds and upsampling, all per image, so each row is what a separate encode gives (on the
  // CPU bit for bit: its convolution runs image by image), with half the encoder's launches.
  const Tensor lat = vae_.encode(be_.concat({image, depth_rgb}, 0));  // [2, 4, h, w]
  const Tensor nz = be_.random_normal_counter({1, lat.dim(1), lat.dim(2), lat.dim(3)}, seed_, 1, frame_counter_, 0);
  const Tensor x_new = be_.binary(be_.binary(be_.slice(lat, 0, 0, 1), alpha0_, Binary::Mul),
                                  be_.binary(nz, beta0_, Binary::Mul), Binary::Add);
  const Tensor d_new = be_.slice(lat, 0, 1, 2);
  if (debug) {
    debug->put("x_t_latent", be_.to_host(x_new));
    debug->put("depth_latent", be_.to_host(d_new));
  }
  stages.stage("unet");
  be_.write_slice(sample_, x_new, {0, 0, 0, 0});  // rows 1.. hold the carried buffer
  be_.write_slice(depth_in_, d_new, {0, 0, 0, 0});
  const Tensor& sample = sample_;  // [T, 4, h, w]
  const Tensor& depth = depth_in_;
  if (debug) {
    const Shape s5{int64_t(T_), 4, 1, lh_, lw_};
    debug->put("unet_in_sample", be_.to_host(sample.reshape(s5)));
    debug->put("unet_in_depth", be_.to_host(depth.reshape(s5)));
    std::vector<int64_t> pe(cache_.pe_idx().begin(), cache_.pe_idx().end());
    std::vector<int64_t> up(cache_.update_idx().begin(), cache_.update_idx().end());
    debug->put("unet_in_attn_bias", HostTensor::from_f32({int64_t(T_), cache_.window()}, cache_.attn_bias().data()));
    debug->put("unet_in_pe_idx", HostTensor::from_i64({int64_t(T_), cache_.window()}, pe.data()));
    debug->put("unet_in_update_idx", HostTensor::from_i64({int64_t(T_)}, up.data()));
  }
  unet::RunCtx ctx(be_, unet::Mode::Stream);
  ctx.B = T_;
  ctx.F = 1;
  ctx.cache = &cache_;
  const KvCache::DeviceState state = cache_.upload_state();
  ctx.state = &state;
  ctx.context = prompt_rows_;
  ctx.context_kv = &context_kv_;
  const Tensor eps = unet_.forward(ctx, sample, depth, stream_t_features_);
  cache_.advance_device();  // the host half: step_host()
  if (debug) debug->put("unet_noise_pred", be_.to_host(eps.reshape({int64_t(T_), 4, 1, lh_, lw_})));
  // x0 of every row with that row's scalars.
  const Tensor pred = be_.binary(be_.binary(sample, be_.binary(eps, row_beta_, Binary::Mul), Binary::Sub), row_alpha_,
                                 Binary::Div);
  const Tensor x0 = be_.binary(be_.binary(pred, row_c_out_, Binary::Mul), be_.binary(sample, row_c_skip_, Binary::Mul),
                               Binary::Add);
  const Tensor out_latent = be_.slice(x0, 0, T_ - 1, T_);
  if (debug) debug->put("x0_pred_to_decode", be_.to_host(out_latent));
  if (T_ > 1) {
    const int64_t rest = T_ - 1;
    const Tensor nz = be_.random_normal_counter({rest, 4, lh_, lw_}, seed_, 3, frame_counter_, 0);
    const Tensor a = be_.slice(row_alpha_, 0, 1, T_), b = be_.slice(row_beta_, 0, 1, T_);
    // The next call's rows 1..T-1, written in place (x0 and the slices are separate tensors, so
    // overwriting the UNet inputs now is safe).
    be_.write_slice(sample_,
                    be_.binary(be_.binary(be_.slice(x0, 0, 0, rest), a, Binary::Mul), be_.binary(nz, b, Binary::Mul),
                               Binary::Add),
                    {1, 0, 0, 0});
    be_.write_slice(depth_in_, be_.slice(depth_in_, 0, 0, rest), {1, 0, 0, 0});
  }
  be_.counter_add(frame_counter_, 1);
  stages.stage("decode");
  return decode_to_unit(out_latent);
}

// StreamDiffusion's similar-image filter: skip with probability max(0, 1 - (1 - sim) / (1 - thr))
// (Philox draw instead of random.uniform, so runs are reproducible), at most max_skip in a row.
// One rule for both paths below; they differ only in where the similarity is computed.
bool LiveStream::similar_skip(double sim) {
  const double p = std::max(0.0, 1.0 - (1.0 - sim) / (1.0 - sim_threshold_));
  const double u = philox::uniform_at(uint64_t(frame_index_), seed_, 0, 5, 0);
  return u < p && sim_skipped_ < sim_max_skip_;
}

// The host path: the fitted frame's bytes against the previous kept frame's bytes.
bool LiveStream::similar_to_previous(const uint8_t* frame, int channels) {
  if (sim_threshold_ >= 1.0) return false;
  sim_prev_channels_ = 0;  // the device path's previous frame is stale from here on
  const size_t bytes = size_t(width_ * height_ * channels);
  const bool skip = !sim_prev_.empty() && sim_prev_.size() == bytes && !last_rgb_.empty() &&
                    similar_skip(frame_cosine_similarity(sim_prev_.data(), frame, width_ * height_, channels));
  if (skip) {
    ++sim_skipped_;
  } else {
    sim_skipped_ = 0;
    sim_prev_.assign(frame, frame + bytes);
  }
  return skip;
}

// The device path: the fitted image against the previous kept one in sim_prev_fitted_ (a fixed
// buffer, overwritten in place). The similarity comes back to the host (a small copy and a wait
// per frame), which is why only a stream with the filter on takes it.
bool LiveStream::similar_on_device(const Tensor& fitted, int channels) {
  sim_prev_.clear();  // the host path's previous frame is stale from here on
  const bool skip = sim_prev_channels_ == channels && !last_rgb_.empty() &&
                    similar_skip(be_.image_cosine_similarity(fitted, sim_prev_fitted_));
  if (skip) {
    ++sim_skipped_;
  } else {
    sim_skipped_ = 0;
    if (!sim_prev_fitted_.defined() || sim_prev_fitted_.shape() != fitted.shape() ||
        sim_prev_fitted_.dtype() != fitted.dtype()) {
      drop_capture();  // before the old buffer goes: a prefitted region reads it
      sim_prev_fitted_ = be_.zeros(fitted.shape(), fitted.dtype());
    }
    be_.write_slice(sim_prev_fitted_, fitted, {0, 0, 0, 0});
    sim_prev_channels_ = channels;
  }
  return skip;
}

void LiveStream::frame_region() {
  const Geometry& g = region_geom_;
  const Tensor image01 =
      g.prefitted ? sim_prev_fitted_ : be_.image_fit_from_bytes(frame_in_, g.h, g.w, g.channels, height_, width_);
  be_.image_to_u8(step_device(image01, nullptr), frame_out_);
}

void LiveStream::fixed_addresses(std::vector<const void*>& a) {
  a.clear();
  for (const Tensor* t : {&frame_in_, &frame_out_, &sample_, &depth_in_, &prompt_rows_, &frame_counter_, &sim_prev_fitted_})
    a.push_back(t->data());
  const KvCache::DeviceState st = cache_.upload_state();
  for (const Tensor* t : {&st.pe_idx, &st.update_idx, &st.bias}) a.push_back(t->data());
  for (size_t l = 0; l < cache_.num_layers(); ++l) a.push_back(cache_.cache(l).data());
  for (const std::vector<Tensor>* kv : {&context_kv_.k, &context_kv_.v})
    for (const Tensor& t : *kv) a.push_back(t.data());
}

void LiveStream::drop_capture() {
  be_.release_capture(graph_);
  graph_ = 0;
  region_warm_ = false;
}

std::string LiveStream::frame_path() const {
  if (graph_) return "graph";
  return capture_note_.empty() ? "eager" : "eager: " + capture_note_;
}

bool LiveStream::stream_frame(const FrameView& f, uint8_t* out_rgb) {
  stage_frame(f);
  return run_staged_frame(out_rgb);
}

void LiveStream::stage_frame(const FrameView& f, bool prefitted) {
  L2D_ASSERT(warmed_up_);
  const size_t in_bytes = size_t(f.width * f.height * f.channels), out_bytes = size_t(width_ * height_ * 3);
  const Geometry g{f.height, f.width, f.channels, prefitted};
  if (!frame_in_.defined() || frame_in_.bytes() < in_bytes) {
    drop_capture();  // before the old buffer goes: the graph reads it
    frame_in_ = Tensor(&be_, DType::I32, {int64_t((in_bytes + 3) / 4)});
  }
  if (!frame_out_.defined()) frame_out_ = Tensor(&be_, DType::I32, {int64_t((out_bytes + 3) / 4)});
  if (!(g == region_geom_)) {  // a new camera size: new fit tables, so a new graph
    drop_capture();
    region_geom_ = g;
    capture_off_ = false;  // a capture that failed for the old size may work for this one
  }
  be_.upload_bytes(frame_in_, f.data, in_bytes);
}

bool LiveStream::run_staged_frame(uint8_t* out_rgb) {
  const size_t out_bytes = size_t(width_ * height_ * 3);
  if (graph_ && be_.stage_profiling()) {
    // Stage profiling times host-marked stages, which a replay does not run: profiled frames run
    // the region eagerly (the graph stays; eager blocks never come from the graph's).
    frame_region();
    ++eager_regions_;
  } else if (graph_) {
    fixed_addresses(addresses_now_);
    if (addresses_now_ != graph_addresses_)
      fail(L2D_ERR_INTERNAL, "stream: a buffer of the captured step moved without the graph being dropped");
    be_.replay(graph_);
    ++replays_;
  } else if (!region_warm_ || capture_off_) {
    // The first frame of a geometry runs eagerly: lazy tables and kernel autotuning happen here,
    // outside any capture.
    frame_region();
    region_warm_ = true;
    ++eager_regions_;
  } else {
    std::string why;
    graph_ = be_.capture([this] { frame_region(); }, &why);  // runs the region once either way
    ++(graph_ ? captures_ : eager_regions_);
    if (graph_) fixed_addresses(graph_addresses_);
    if (!graph_) {
      capture_off_ = true;
      capture_note_ = why;
      if (!why.empty())
        std::fprintf(stderr, "live2diff: capturing the stream step failed, it runs eagerly from now on: %s\n",
                     why.c_str());
    }
  }
  step_host();
  if (streamed_ < T_) return false;  // the first T-1 outputs come from the zero buffers
  be_.download_bytes(frame_out_, out_rgb, out_bytes);
  if (sim_threshold_ < 1.0) last_rgb_.assign(out_rgb, out_rgb + out_bytes);
  return true;
}

bool LiveStream::push_frame(const FrameView& in, uint8_t* out_rgb) {
  // After warm-up on CUDA the frame goes up as it comes and is fitted on the device (no host
  // resampling). With the similar-image filter on, the fitted image is compared on the device with
  // the previous kept one before the step runs. The CPU takes that path too for frames already at
  // the stream size (no resampling, so the same bytes as the host path and the same decisions);
  // frames it must resize stay on the host path, whose double-precision fit the goldens use.
  const bool filter = sim_threshold_ < 1.0;
  const bool at_size = in.width == width_ && in.height == height_;
  if (warmed_up_ && (be_.fits_frames_on_device() || (filter && at_size))) {
    if (!filter) return stream_frame(in, out_rgb);
    if (at_size) fit_frame(in, width_, height_, fit_scratch_);  // checks the frame (no copy at size)
    stage_frame(in, /*prefitted=*/true);
    const Tensor fitted = be_.image_fit_from_bytes(frame_in_, in.height, in.width, in.channels, height_, width_);
    if (similar_on_device(fitted, in.channels)) {
      // A skipped frame costs no UNet work: the last output is repeated from the host.
      std::copy(last_rgb_.begin(), last_rgb_.end(), out_rgb);
      return true;
    }
    // Kept: similar_on_device wrote the fitted image into sim_prev_fitted_, which the region reads.
    return run_staged_frame(out_rgb);
  }
  const uint8_t* frame = fit_frame(in, width_, height_, fit_scratch_);
  const size_t bytes = size_t(width_ * height_ * in.channels);
  const int sink = unet_.config().motion.sink;
  if (!warmed_up_) {
    if (!pending_.empty() && in.channels != pending_channels_) pending_.clear();
    pending_channels_ = in.channels;
    pending_.insert(pending_.end(), frame, frame + bytes);
    if (int64_t(pending_.size() / bytes) < sink) return false;
    warmup(pending_.data(), sink, in.channels, nullptr);
    pending_.clear();
    return false;
  }
  if (similar_to_previous(frame, in.channels)) {
    // A skipped frame costs no device work at all: the last output is repeated from the host.
    std::copy(last_rgb_.begin(), last_rgb_.end(), out_rgb);
    return true;
  }
  return stream_frame({frame, width_, height_, in.channels}, out_rgb);
}

void LiveStream::run(const std::string& method, TensorMap& io) {
  TensorMap* debug = debug_ ? &io : nullptr;
  auto put_frames = [&](const Tensor& images) {
    const int64_t n = images.dim(0);
    std::vector<float> f(size_t(n * height_ * width_ * 3));
    std::vector<uint8_t> u(f.size());
    be_.image_to_host(images, f.data(), u.data());
    io.put("frames", HostTensor::from_f32({n, height_, width_, 3}, f.data()));
    HostTensor u8;
    u8.dtype = L2D_U8;
    u8.shape = {n, height_, width_, 3};
    u8.bytes.assign(u.begin(), u.end());
    io.put("frames_u8", std::move(u8));
  };
  // A U8 [N, H, W, C] or [H, W, C] entry, every frame fitted to the stream size, contiguous.
  auto fitted_frames = [&](const char* name, int64_t* n, int* channels) {
    const HostTensor& t = io.at(name, "stream");
    L2D_REQUIRE(t.dtype == L2D_U8, "stream: \"", name, "\" must be uint8, got ", dtype_name(t.dtype));
    const bool batch = t.shape.size() == 4;
    L2D_REQUIRE(t.shape.size() == 3 || batch, "stream: \"", name, "\" must be [N, H, W, C] or [H, W, C], got ",
                shape_str(t.shape));
    const int64_t h = t.shape[batch ? 1 : 0], w = t.shape[batch ? 2 : 1];
    *channels = int(t.shape.back());
    *n = batch ? t.shape[0] : 1;
    L2D_REQUIRE(*channels == 3 || *channels == 4, "stream: frames must have 3 or 4 channels, got ", *channels);
    const size_t in_bytes = size_t(h * w * *channels), out_bytes = size_t(width_ * height_ * *channels);
    std::vector<uint8_t> out, scratch;
    out.reserve(size_t(*n) * out_bytes);
    for (int64_t k = 0; k < *n; ++k) {
      const uint8_t* f = fit_frame({t.bytes.data() + size_t(k) * in_bytes, w, h, *channels}, width_, height_, scratch);
      out.insert(out.end(), f, f + out_bytes);
    }
    return out;
  };
  if (method == "set_prompt") {
    set_prompt(io.at("prompt_embeds", "stream set_prompt"));
  } else if (method == "warmup") {
    int64_t n = 0;
    int channels = 3;
    const std::vector<uint8_t> frames = fitted_frames("frames", &n, &channels);
    put_frames(warmup(frames.data(), n, channels, debug));
  } else if (method == "push") {
    int64_t n = 0;
    int channels = 3;
    const std::vector<uint8_t> frame = fitted_frames("frame", &n, &channels);
    L2D_REQUIRE(n == 1, "stream push takes one frame, got ", n);
    put_frames(step(frame.data(), channels, debug));
    const int32_t ready = streamed_ >= T_ ? 1 : 0;
    HostTensor r;
    r.dtype = L2D_I32;
    r.shape = {1};
    r.bytes.resize(4);
    std::memcpy(r.bytes.data(), &ready, 4);
    io.put("ready", std::move(r));
  } else if (method == "get_state") {
    for (size_t l = 0; l < cache_.num_layers(); ++l) io.put(KvCache::layer_name(l), cache_.get_cache(l));
  } else if (method == "schedule") {
    const int64_t n = int64_t(sched_.timesteps.size());
    io.put("alphas_cumprod", HostTensor::from_f32({int64_t(sched_.alphas_cumprod.size())}, sched_.alphas_cumprod.data()));
    io.put("sub_timesteps", HostTensor::from_i64({n}, sched_.timesteps.data()));
    io.put("alpha_prod_t_sqrt", HostTensor::from_f32({n}, sched_.alpha_prod_t_sqrt.data()));
    io.put("beta_prod_t_sqrt", HostTensor::from_f32({n}, sched_.beta_prod_t_sqrt.data()));
    io.put("c_skip", HostTensor::from_f32({n}, sched_.c_skip.data()));
    io.put("c_out", HostTensor::from_f32({n}, sched_.c_out.data()));
  } else if (method == "reset") {
    reset();
  } else if (method == "frame_path") {
    const auto put_i32 = [&](const char* name, int64_t v) {
      const int32_t x = int32_t(std::min<int64_t>(v, INT32_MAX));
      HostTensor t;
      t.dtype = L2D_I32;
      t.shape = {1};
      t.bytes.resize(4);
      std::memcpy(t.bytes.data(), &x, 4);
      io.put(name, std::move(t));
    };
    put_i32("graph", graph_ ? 1 : 0);
    put_i32("eager", eager_regions_);
    put_i32("captures", captures_);
    put_i32("replays", replays_);
    const std::string note = frame_path();  // "graph", "eager" or "eager: <why the capture failed>"
    HostTensor t;
    t.dtype = L2D_U8;
    t.shape = {int64_t(note.size())};
    t.bytes.assign(note.begin(), note.end());
    io.put("path", std::move(t));
  } else {
    unknown_method("stream", method);
  }
}

}  // namespace l2d
