// backend.h: the interface every model is written against. A Backend owns device memory and
// implements a fixed list of tensor ops; the CPU backend (fp32, the oracle) and the CUDA backend
// (fp16 storage / fp32 accumulation, or fp32 for verification) implement the same list, so model
// code runs unchanged on both.
//
// Conventions for every op:
//   - inputs are contiguous, C-order; outputs are freshly allocated (backends pool allocations, so
//     this is cheap and deterministic, which CUDA-graph capture relies on);
//   - images are NCHW; "tokens" are [B, L, C] with C innermost;
//   - float tensors are stored in float_dtype(); index tensors are I32;
//   - shape errors are bugs in model code and throw L2D_ERR_INTERNAL; data errors are caught earlier.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "host_tensor.h"
#include "stage_profile.h"
#include "tensor.h"

namespace l2d {

// Explicit padding so TF "SAME" (asymmetric) padding and PyTorch padding share one op.
struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  static Conv2dParams same_pad(int stride, int pad) { return {stride, stride, pad, pad, pad, pad}; }
};

enum class Unary {
  Silu,       // x * sigmoid(x)
  Relu,       // max(x, 0)
  GeluErf,    // 0.5 x (1 + erf(x / sqrt 2)), the exact GELU
  GeluTanh,   // tanh approximation of GELU
  QuickGelu,  // x * sigmoid(1.702 x) (CLIP)
  Tanh,
  Sigmoid,
  Affine,  // a * x + b
  Clamp,   // min(max(x, a), b)
};

enum class Binary { Add, Sub, Mul, Div };

enum class AttnMask { None, Causal };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  // Storage type of float tensors (F32 on CPU; F16 or F32 on CUDA).
  virtual DType float_dtype() const = 0;

  // ---- memory (used by Buffer) ----
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* ptr, size_t bytes) = 0;
  // Bytes currently allocated and the high-water mark.
  virtual size_t bytes_in_use() const = 0;
  virtual size_t peak_bytes() const = 0;
  // Bytes held by captured graphs that no tensor holds between replays (their intermediates):
  // not in bytes_in_use, but in peak_bytes. 0 where nothing is captured (the CPU).
  virtual size_t graph_reserved_bytes() const { return 0; }
  // JSON describing which kernels run the dense ops (CUDA: path per layer class, vendor libraries);
  // "null" where there is no choice. May synchronise.
  virtual std::string kernel_info_json() { return "null"; }

  // ---- host transfer ----
  // A tensor on this backend from host data (floats -> float_dtype(), integers -> I32).
  virtual Tensor from_host(const HostTensor& host) = 0;
  // Float tensors come back as F32, I32 tensors as I32 (int32 values).
  virtual HostTensor to_host(const Tensor& t) = 0;
  virtual void synchronize() = 0;

  // ---- creation ----
  Tensor empty(const Shape& shape) { return Tensor(this, float_dtype(), shape); }
  virtual Tensor zeros(const Shape& shape, DType dtype) = 0;
  virtual void fill(Tensor& t, float value) = 0;

  // ---- dense ops ----
  // x [N, C, H, W], w [O, C, kh, kw], bias [O] or null -> [N, O, Ho, Wo]. Zero padding.
  virtual Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) = 0;
  // x [N, C, H, W], w [C, O, k, k] (PyTorch ConvTranspose2d layout), stride == k, no padding
  // -> [N, O, H*k, W*k]. (The only transposed conv the models need: MiDaS reassemble.)
  virtual Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride) = 0;
  // x [..., K], w [N, K] (PyTorch Linear layout), bias [N] or null -> [..., N].
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) = 0;
  // linear(x, w, bias) + residual in one op (residual: exactly the output's shape), the residual
  // connection of a transformer block. A backend with a GEMM epilogue adds it before the result is
  // stored and saves a pass over the output; this default runs linear then binary Add.
  virtual Tensor linear_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& residual);
  // geglu(linear(x, w, bias)): x [..., K], w [2C, K], bias [2C] or null -> [..., C], the first
  // projection of a transformer feed-forward (rows 0..C-1 of w make the value, rows C..2C-1 the gate).
  // A backend with a GEMM epilogue applies the GEGLU before the one store and never writes the
  // [..., 2C] intermediate; this default runs linear then geglu (the CPU's, bit for bit).
  virtual Tensor linear_geglu(const Tensor& x, const Tensor& w, const Tensor* bias);
  // Batched a [B, M, K] @ b [B, K, N] -> [B, M, N] (B may be 1 for either operand: broadcast).
  virtual Tensor matmul(const Tensor& a, const Tensor& b) = 0;
  // ((conv2d(x, w, bias) + image_bias) + residual) in one op: bias [O] or null as in conv2d;
  // image_bias [N, O] (row n for image n: the UNet resnet's time embedding) or [1, O] (one row for
  // all) or null; residual [N, O, Ho, Wo] (the resnet's skip) or null. A backend with a GEMM
  // epilogue adds them before the result is stored and saves the passes of separate Adds; this
  // default runs conv2d then binary Adds of image_bias and residual, in that order (the CPU adds
  // them in its bias pass, bit for bit the same).
  virtual Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* image_bias,
                              const Tensor* residual, const Conv2dParams& p);
  // t [N, P, K] (tokens, P = height * width), w [O, K], bias [O] or null, residual (the output's
  // shape) or null -> [N, O, height, width] = linear(t, w, bias) viewed as [N, height, width, O],
  // permuted to NCHW (+ residual): a transformer's output projection back to the image layout with
  // its residual connection. A GEMM with the roles swapped (w as A, the tokens as a [P, K] B, bias
  // per output row) writes NCHW directly: no permute, no separate add. Default: the composition.
  virtual Tensor linear_to_image(const Tensor& t, const Tensor& w, const Tensor* bias, const Tensor* residual,
                                 int64_t height, int64_t width);

  // ---- normalisation ----
  // x [N, C, *spatial]: statistics per (n, group) over C/groups channels and all spatial
  // positions (biased variance); gamma/beta [C]; optional fused SiLU.
  virtual Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                            bool fuse_silu) = 0;
  // group_norm(x, ..) written as tokens: x [N, C, *spatial] -> [N, S, C] (S = the spatial size),
  // i.e. permute(group_norm(..)) without the permute pass: a transformer's input layout. The
  // default is the composition.
  virtual Tensor group_norm_tokens(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                   bool fuse_silu);
  // x [..., C]: normalised over the last dimension; gamma/beta [C].
  virtual Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) = 0;

  // ---- attention ----
  // Multi-head softmax(q k^T / sqrt(D) [+ causal mask]) v. q [B, Lq, H*D], k/v [B, Lk, H*D]
  // -> [B, Lq, H*D]. (k and v may have a batch of 1, broadcast over B: cross-attention to one prompt.)
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, AttnMask mask) = 0;

  // Streaming temporal attention over a KV-cache ring, one new frame per row (denoising step).
  // q, k, v: [R, P, C] PE-free projections of the new frame (P = pixels of the level).
  // cache: [R, 2, P, W, C] (K then V), written IN PLACE: slot update_idx[r] of row r gets k/v.
  // qpe, kpe, vpe: [max_len, C] positional encodings already projected by W_q/W_k/W_v.
  // pe_idx: I32 [R, W]; update_idx: I32 [R]; bias: float [R, W] (0 or -inf), added to the scores.
  // Per row r, pixel p, head h: query = q + qpe[pe_idx[r, update_idx[r]]],
  // keys[s] = cache_k[s] + kpe[pe_idx[r, s]], values[s] = cache_v[s] + vpe[pe_idx[r, s]].
  // Returns [R, P, C].
  virtual Tensor stream_temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& cache,
                                           const Tensor& qpe, const Tensor& kpe, const Tensor& vpe,
                                           const Tensor& pe_idx, const Tensor& update_idx, const Tensor& bias,
                                           int heads) = 0;

  // ---- attention on packed projections (one QKV projection: x @ [W_q; W_k; W_v]^T) ----
  // Self-attention whose q, k, v are the three column blocks of one tensor qkv [B, L, 3C]
  // (C = H*D): q = qkv[..., 0:C], k = qkv[..., C:2C], v = qkv[..., 2C:3C]. -> [B, L, C], exactly
  // attention(q, k, v, heads, mask) of those slices (the default slices and calls it; a backend
  // may instead read the rows with a stride of 3C and save the three copies).
  virtual Tensor self_attention(const Tensor& qkv, int heads, AttnMask mask);
  // stream_temporal_attention with q, k, v the three column blocks of qkv [R, P, 3C] as above;
  // cache, qpe/kpe/vpe, pe_idx, update_idx, bias and heads as there (the cache written in place:
  // slot update_idx[r] of row r gets the k and v blocks). -> [R, P, C].
  virtual Tensor stream_temporal_attention_qkv(const Tensor& qkv, Tensor& cache, const Tensor& qpe, const Tensor& kpe,
                                               const Tensor& vpe, const Tensor& pe_idx, const Tensor& update_idx,
                                               const Tensor& bias, int heads);

  // ---- elementwise ----
  virtual Tensor unary(const Tensor& x, Unary op, float a = 0.f, float b = 0.f) = 0;
  // NumPy broadcasting (shapes aligned at the right).
  virtual Tensor binary(const Tensor& a, const Tensor& b, Binary op) = 0;
  // x [..., 2C] -> x[..., :C] * gelu_erf(x[..., C:]) (diffusers GEGLU).
  virtual Tensor geglu(const Tensor& x) = 0;

  // ---- layout ----
  virtual Tensor permute(const Tensor& x, const std::vector<int>& perm) = 0;
  // Concatenation along dim (same dtype, other dims equal): one write_slice per input, so every
  // backend gets it from write_slice.
  Tensor concat(const std::vector<Tensor>& xs, int dim);
  // x[..., start:end:step, ...] along dim.
  virtual Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step = 1) = 0;
  // dst[starts[0] + i0, starts[1] + i1, ...] = src[i0, i1, ...] (same ndim). In place.
  virtual void write_slice(Tensor& dst, const Tensor& src, const std::vector<int64_t>& starts) = 0;

  // ---- resampling ----
  // x [N, C, H, W] -> [N, C, out_h, out_w], PyTorch "nearest" (src = floor(dst * in / out)).
  virtual Tensor upsample_nearest(const Tensor& x, int out_h, int out_w) = 0;
  // PyTorch bilinear (no antialias) with align_corners as given.
  virtual Tensor resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) = 0;
  // Max pooling, padding with -inf (only the pad_* and stride fields of p are used).
  virtual Tensor max_pool2d(const Tensor& x, int kernel, const Conv2dParams& p) = 0;

  // ---- lookup / reduce ----
  // ids I32 [...], table [V, D] -> [..., D]; out-of-range ids throw L2D_ERR_INVALID_ARGUMENT.
  virtual Tensor embedding(const Tensor& ids, const Tensor& table) = 0;
  // (x - min(x)) / (max(x) - min(x)) with ONE min and max over the whole tensor, no epsilon
  // (Live2Diff's depth normalisation). Computed on the device: no host sync.
  virtual Tensor minmax_normalize(const Tensor& x) = 0;

  // ---- streaming I/O ----
  // normal(shape, seed, stream, draw) of the golden README's Philox spec, generated on the device
  // (diffusion noise never crosses the bus).
  virtual Tensor random_normal(const Shape& shape, uint32_t seed, uint32_t stream, uint32_t draw) = 0;
  // random_normal with the draw index read on the device: draw = counter[0] + offset, counter an
  // I32 [1] tensor. A captured per-frame graph then draws new noise on every replay with no host
  // argument changing; counter_add moves the counter on the device.
  virtual Tensor random_normal_counter(const Shape& shape, uint32_t seed, uint32_t stream, const Tensor& counter,
                                       int32_t offset) = 0;
  // counter[0] += by (counter: I32 [1]), on the device.
  virtual void counter_add(Tensor& counter, int32_t by) = 0;
  // The KV-cache bookkeeping update after a streaming call (the rule in kv_cache.h), in place on
  // the device: bias float [R, W] (0 or -inf), pe_idx I32 [R, W], update_idx I32 [R], sink S.
  virtual void kv_advance(Tensor& bias, Tensor& pe_idx, Tensor& update_idx, int sink) = 0;
  // Host frames uint8 [N, H, W, channels] (channels 3 = RGB or 4 = RGBA, alpha ignored)
  // -> float [N, 3, H, W] = value / 255. The only per-frame host-to-device copy.
  virtual Tensor image_from_u8(const uint8_t* host, int64_t n, int64_t h, int64_t w, int channels) = 0;
  // One host camera frame uint8 [h, w, channels] (3 RGB / 4 RGBA, alpha ignored; any size up to
  // 16384 x 16384) fitted to the stream: scaled to cover out_h x out_w (aspect kept) with the
  // antialiased triangle filter, centre-cropped (core/frame_fit.h), rounded to uint8 levels
  // -> float [1, 3, out_h, out_w] = level / 255. Within one level of fit_frame() + image_from_u8()
  // (float weights here, double there); a frame already at the output size gives image_from_u8
  // exactly. The base version fits on the host (fit_frame_levels) and uploads the result; the
  // CUDA backend uploads the frame as it comes and fits it on the device.
  virtual Tensor image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                                   int64_t out_w);
  // True when image_fit_from_u8 runs on the device: the stream then uploads camera frames as they
  // come. (The CPU stream keeps the double-precision host path, fit_frame, for frames it must
  // resize: the golden cases use its bytes, and the float op may differ from it by one level.)
  virtual bool fits_frames_on_device() const { return false; }
  // x [N, 3, H, W] -> host float [N, H, W, 3] (when out_f32 is non-null) and uint8
  // round(255 * clamp(x, 0, 1)) [N, H, W, 3] (when out_u8 is non-null). Synchronises.
  virtual void image_to_host(const Tensor& x, float* out_f32, uint8_t* out_u8) = 0;

  // ---- the per-frame path through fixed device buffers (LiveStream::push_frame) ----
  // The frame goes up into a tensor that lives as long as the stream, the step reads it and
  // writes the output bytes into another, so the region in between touches no host memory and
  // can be captured (below). `dst`/`src` hold raw bytes (any dtype; bytes() large enough).
  // upload_bytes: host -> dst, stream-ordered, no wait; `host` may be reused on return (CUDA: it
  // is copied into pinned staging first, which is how the copy can be asynchronous).
  virtual void upload_bytes(Tensor& dst, const uint8_t* host, size_t bytes) = 0;
  // image_fit_from_u8 of a frame whose bytes (uint8 [h, w, channels]) are already in `frame`.
  virtual Tensor image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                                      int64_t out_w) = 0;
  // x [1, 3, H, W] -> uint8 round(255 * clamp(x, 0, 1)) [H, W, 3] into the bytes of `out`, in place.
  virtual void image_to_u8(const Tensor& x, Tensor& out) = 0;
  // src -> host: the frame's one wait (CUDA: one event), which also reports the data errors the
  // kernels flagged since the last check, like synchronize().
  virtual void download_bytes(const Tensor& src, uint8_t* host, size_t bytes) = 0;
  // The similar-image filter on the device path: cosine similarity of two fitted images
  // [1, 3, H, W] (values level / 255, fp32 or fp16), each mapped back to its uint8 level and to
  // [-1, 1] as frame_cosine_similarity does (core/frame_fit.h). Returns the value to the host, so
  // it waits for the device (CUDA: a block reduction in fp32, three floats copied back): the stream
  // calls it only when the filter is on. The default reads both images to the host and applies
  // frame_cosine_similarity to their levels, bit for bit the host path's value on the same bytes.
  virtual double image_cosine_similarity(const Tensor& a, const Tensor& b);

  // ---- capture of the per-frame region (CUDA graphs) ----
  // Runs `region` once and, where the backend can, records it so replay() runs the same work
  // again. The region may only run device ops on tensors whose addresses stay fixed (no host
  // transfer, no synchronize, no allocation pattern that depends on data). Returns a handle > 0,
  // or 0 when the region ran eagerly: the backend does not capture (the default), capture is
  // switched off, or it failed; then *why says why ("" when not supported or switched off).
  virtual int64_t capture(const std::function<void()>& region, std::string* why) {
    region();
    if (why) why->clear();
    return 0;
  }
  // Runs a captured region again (CUDA: one cudaGraphLaunch), stream-ordered, no wait.
  virtual void replay(int64_t handle);
  // Forgets a captured region and returns its memory. Never throws; 0 is ignored.
  virtual void release_capture(int64_t handle) noexcept { (void)handle; }
  // ---- stage profiling (l2d_context_profile, scripts/bench.ts) ----
  // Off by default: stage_begin then returns 0 and stage_end(.., 0) returns at once, so pipeline
  // code may bracket its stages unconditionally (StageTimer). While on, each stage's milliseconds
  // are summed per name: wall time here (right for a synchronous backend: the CPU), device time
  // between two events on CUDA (no events while a CUDA graph is being captured). Never throw.
  virtual void set_stage_profiling(bool on) { stage_profiling_ = on; }
  bool stage_profiling() const { return stage_profiling_.load(std::memory_order_relaxed); }
  virtual uint64_t stage_begin() noexcept;
  virtual void stage_end(const char* stage, uint64_t token) noexcept;
  // {"stage": {"calls": n, "ms": total}, ...} since the context was created. May synchronise.
  virtual std::string stage_times_json() { return stage_times_.json(); }

 protected:
  std::atomic<bool> stage_profiling_{false};
  StageTimes stage_times_;
};

// Brackets consecutive stages of pipeline code: stage("unet") ends the previous stage (if any) and
// begins the next one; the destructor ends the last. One branch per call when profiling is off.
class StageTimer {
 public:
  explicit StageTimer(Backend& be) : be_(be) {}
  ~StageTimer() { end(); }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  void stage(const char* name) noexcept {
    end();
    name_ = name;
    token_ = be_.stage_begin();
  }
  void end() noexcept {
    if (name_ && token_) be_.stage_end(name_, token_);
    name_ = nullptr;
  }

 private:
  Backend& be_;
  const char* name_ = nullptr;
  uint64_t token_ = 0;
};

}  // namespace l2d
