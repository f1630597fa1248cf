// Frame fitting on the device (Backend::image_fit_from_u8): the camera frame is uploaded as it
// comes (any size, RGB or RGBA bytes) and one kernel resamples, crops and converts it to the
// float NCHW image, so a 1080p frame costs one 6 MB copy and no host-side resampling. The weight
// tables depend only on the geometry (frame size -> stream size): they are built on the host
// once per geometry (core/frame_fit.h) and kept on the device. image_fit_from_bytes fits a frame
// already on the device (the stream's fixed upload buffer), which a captured graph can replay.
#include "../../core/frame_fit.h"
#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {

// One thread per output pixel and channel: fit_level (the shared reference formula) over the
// taps_y x taps_x window of the frame, / 255.
template <typename T>
static __global__ void fit_frame_kernel(const uint8_t* __restrict__ frame, int64_t in_w, int channels,
                                        const int32_t* __restrict__ xs, const float* __restrict__ xw, int taps_x,
                                        const int32_t* __restrict__ ys, const float* __restrict__ yw, int taps_y,
                                        T* __restrict__ out, int64_t out_w, int64_t out_h) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over [3, out_h, out_w]
  if (i >= 3 * out_h * out_w) return;
  const int64_t x = i % out_w, y = (i / out_w) % out_h;
  const int c = int(i / (out_w * out_h));
  const float level = fit_level(frame, in_w, channels, c, xs[x], xw + x * taps_x, taps_x, ys[y], yw + y * taps_y,
                                taps_y);
  out[i] = from_f<T>(level / 255.f);
}

Tensor CudaBackend::image_fit_from_u8(const uint8_t* host, int64_t h, int64_t w, int channels, int64_t out_h,
                                      int64_t out_w) {
  check_fit_args(host, h, w, channels, out_h, out_w);
  const size_t bytes = size_t(h * w * channels);
  Tensor staging(this, DType::I32, {int64_t((bytes + 3) / 4)});  // raw bytes in a pooled buffer
  upload_bytes(staging, host, bytes);  // through pinned staging: `host` is free on return, no wait
  return image_fit_from_bytes(staging, h, w, channels, out_h, out_w);
}

Tensor CudaBackend::image_fit_from_bytes(const Tensor& frame, int64_t h, int64_t w, int channels, int64_t out_h,
                                         int64_t out_w) {
  const uint8_t* src = static_cast<const uint8_t*>(frame.data());
  check_fit_args(src, h, w, channels, out_h, out_w);
  L2D_ASSERT(size_t(h * w * channels) <= frame.bytes());
  if (h == out_h && w == out_w) return image_from_bytes(frame, 1, h, w, channels);
  std::vector<Tensor> d;
  {
    std::lock_guard<std::mutex> lock(fit_mutex_);
    const std::vector<int64_t> key{w, h, out_w, out_h};
    auto it = fit_tables_.find(key);
    if (it == fit_tables_.end()) {
      // Made in the eager frame of a geometry; missing inside a capture (evicted by other streams'
      // geometries meanwhile), the copies and sync below would invalidate it: fail the capture
      // cleanly instead (it reruns eagerly and remakes them).
      bool capturing = false;
      {
        std::lock_guard<std::mutex> pool_lock(pool_mutex_);
        capturing = capture_here() != nullptr;
      }
      if (capturing) fail(L2D_ERR_INTERNAL, "frame-fit tables for ", w, "x", h, " were evicted before the capture");
      // Evicted tables stay alive as long as a graph that reads them (keep_for_capture).
      if (fit_tables_.size() >= 16) fit_tables_.clear();  // a camera changes size rarely
      const FitTables t = fit_tables(w, h, out_w, out_h);
      std::vector<Tensor> made;
      made.emplace_back(this, DType::I32, Shape{out_w});
      made.emplace_back(this, DType::F32, Shape{out_w, t.taps_x});
      made.emplace_back(this, DType::I32, Shape{out_h});
      made.emplace_back(this, DType::F32, Shape{out_h, t.taps_y});
      CUDA_COPY(cudaMemcpyAsync(made[0].data(), t.x_start.data(), made[0].bytes(), cudaMemcpyHostToDevice, stream_));
      CUDA_COPY(cudaMemcpyAsync(made[1].data(), t.x_w.data(), made[1].bytes(), cudaMemcpyHostToDevice, stream_));
      CUDA_COPY(cudaMemcpyAsync(made[2].data(), t.y_start.data(), made[2].bytes(), cudaMemcpyHostToDevice, stream_));
      CUDA_COPY(cudaMemcpyAsync(made[3].data(), t.y_w.data(), made[3].bytes(), cudaMemcpyHostToDevice, stream_));
      // The host tables die here; once per geometry, in the eager frame before any capture.
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      it = fit_tables_.emplace(key, std::move(made)).first;
    }
    d = it->second;
  }
  keep_for_capture(d);
  const int taps_x = int(d[1].dim(1)), taps_y = int(d[3].dim(1));
  Tensor y = empty({1, 3, out_h, out_w});
  const unsigned blocks = unsigned(CEIL_DIV(3 * out_h * out_w, int64_t(256)));
  if (fp16_)
    fit_frame_kernel<<<blocks, 256, 0, stream_>>>(src, w, channels, d[0].ptr<int32_t>(), d[1].ptr<float>(), taps_x,
                                                  d[2].ptr<int32_t>(), d[3].ptr<float>(), taps_y, y.ptr<__half>(),
                                                  out_w, out_h);
  else
    fit_frame_kernel<<<blocks, 256, 0, stream_>>>(src, w, channels, d[0].ptr<int32_t>(), d[1].ptr<float>(), taps_x,
                                                  d[2].ptr<int32_t>(), d[3].ptr<float>(), taps_y, y.ptr<float>(),
                                                  out_w, out_h);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace l2d::cuda
