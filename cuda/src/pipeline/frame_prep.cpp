#include "frame_prep.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"
#include "../core/frame_fit.h"

namespace l2d {

const uint8_t* fit_frame(const FrameView& in, int64_t out_w, int64_t out_h, std::vector<uint8_t>& scratch) {
  L2D_REQUIRE(in.data != nullptr, "frame data must not be null");
  L2D_REQUIRE(in.channels == 3 || in.channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", in.channels);
  L2D_REQUIRE(in.width > 0 && in.height > 0 && in.width <= 16384 && in.height <= 16384,
              "frame size ", in.width, "x", in.height, " is outside 1..16384");
  if (in.width == out_w && in.height == out_h) return in.data;
  // Scale to cover, resample with antialiasing, crop the centre (core/frame_fit.h).
  const FitWeights fw = fit_weights(in.width, in.height, out_w, out_h);
  const AxisWeights& ax = fw.x;
  const AxisWeights& ay = fw.y;
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

}  // namespace l2d
