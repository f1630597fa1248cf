#include "frame_prep.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"

namespace l2d {

namespace {

// Resampling weights of one axis, PIL / torchvision "bilinear, antialias=True" style: a triangle
// filter whose support widens with the downscale factor, so shrinking a 1080p frame to 512 averages
// instead of aliasing. Output index o (of the resized axis, offset by `first`) reads inputs
// [start[o], start[o] + weights[o].size()).
struct AxisWeights {
  std::vector<int64_t> start;
  std::vector<std::vector<double>> weights;
};

AxisWeights axis_weights(int64_t in, double resized, int64_t first, int64_t count) {
  const double scale = double(in) / resized;  // input pixels per output pixel
  const double support = std::max(scale, 1.0);
  AxisWeights a;
  for (int64_t o = first; o < first + count; ++o) {
    const double center = (double(o) + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, int64_t(center - support + 0.5));
    const int64_t hi = std::min<int64_t>(in, int64_t(center + support + 0.5));
    std::vector<double> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      const double t = std::fabs((double(j) - center + 0.5) / support);
      w.push_back(t < 1.0 ? 1.0 - t : 0.0);
      total += w.back();
    }
    if (total <= 0) {  // degenerate (tiny input): nearest pixel
      w.assign(1, 1.0);
      a.start.push_back(std::clamp<int64_t>(int64_t(center), 0, in - 1));
    } else {
      for (double& x : w) x /= total;
      a.start.push_back(lo);
    }
    a.weights.push_back(std::move(w));
  }
  return a;
}

}  // namespace

const uint8_t* fit_frame(const FrameView& in, int64_t out_w, int64_t out_h, std::vector<uint8_t>& scratch) {
  L2D_REQUIRE(in.data != nullptr, "frame data must not be null");
  L2D_REQUIRE(in.channels == 3 || in.channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", in.channels);
  L2D_REQUIRE(in.width > 0 && in.height > 0 && in.width <= 16384 && in.height <= 16384,
              "frame size ", in.width, "x", in.height, " is outside 1..16384");
  if (in.width == out_w && in.height == out_h) return in.data;
  // Scale so the frame covers the output (aspect kept), resample with antialiasing, crop the centre.
  // (The original's test.py resizes the shorter side to min(H, W) and centre-crops: the same
  // whenever that covers the output; where it would pad, covering keeps the frame full.)
  const double scale = std::max(double(out_w) / double(in.width), double(out_h) / double(in.height));
  const double rw = double(in.width) * scale, rh = double(in.height) * scale;
  const int64_t off_x = int64_t((rw - double(out_w)) / 2.0), off_y = int64_t((rh - double(out_h)) / 2.0);
  const AxisWeights ax = axis_weights(in.width, rw, off_x, out_w);
  const AxisWeights ay = axis_weights(in.height, rh, off_y, out_h);
  const int c = in.channels;
  // Horizontal pass over the input rows the vertical pass needs, then the vertical pass.
  const int64_t row_lo = ay.start.front();
  int64_t row_hi = row_lo;
  for (size_t o = 0; o < ay.start.size(); ++o) row_hi = std::max(row_hi, ay.start[o] + int64_t(ay.weights[o].size()));
  std::vector<double> tmp(size_t((row_hi - row_lo) * out_w * c));
  for (int64_t y = row_lo; y < row_hi; ++y)
    for (int64_t x = 0; x < out_w; ++x)
      for (int ch = 0; ch < c; ++ch) {
        double v = 0;
        const std::vector<double>& w = ax.weights[size_t(x)];
        for (size_t k = 0; k < w.size(); ++k) v += w[k] * in.data[(y * in.width + ax.start[size_t(x)] + int64_t(k)) * c + ch];
        tmp[size_t(((y - row_lo) * out_w + x) * c + ch)] = v;
      }
  scratch.resize(size_t(out_w * out_h * c));
  for (int64_t y = 0; y < out_h; ++y) {
    const std::vector<double>& w = ay.weights[size_t(y)];
    for (int64_t x = 0; x < out_w; ++x)
      for (int ch = 0; ch < c; ++ch) {
        double v = 0;
        for (size_t k = 0; k < w.size(); ++k)
          v += w[k] * tmp[size_t(((ay.start[size_t(y)] + int64_t(k) - row_lo) * out_w + x) * c + ch)];
        scratch[size_t((y * out_w + x) * c + ch)] = uint8_t(std::lround(std::clamp(v, 0.0, 255.0)));
      }
  }
  return scratch.data();
}

double frame_cosine_similarity(const uint8_t* a, const uint8_t* b, int64_t pixels, int channels) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t p = 0; p < pixels; ++p)
    for (int ch = 0; ch < 3; ++ch) {
      const double va = a[p * channels + ch] / 127.5 - 1.0, vb = b[p * channels + ch] / 127.5 - 1.0;
      dot += va * vb;
      na += va * va;
      nb += vb * vb;
    }
  if (na == 0 || nb == 0) return na == nb ? 1.0 : 0.0;
  return dot / std::sqrt(na * nb);
}

}  // namespace l2d
