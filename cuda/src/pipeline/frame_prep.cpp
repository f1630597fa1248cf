#include "frame_prep.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"

namespace l2d {

const uint8_t* fit_frame(const FrameView& in, int64_t out_w, int64_t out_h, std::vector<uint8_t>& scratch) {
  L2D_REQUIRE(in.data != nullptr, "frame data must not be null");
  L2D_REQUIRE(in.channels == 3 || in.channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", in.channels);
  L2D_REQUIRE(in.width > 0 && in.height > 0 && in.width <= 16384 && in.height <= 16384,
              "frame size ", in.width, "x", in.height, " is outside 1..16384");
  if (in.width == out_w && in.height == out_h) return in.data;
  // Scale so the frame covers the output, then crop the centre.
  const double scale = std::max(double(out_w) / double(in.width), double(out_h) / double(in.height));
  const double off_x = (double(in.width) * scale - double(out_w)) / 2.0;
  const double off_y = (double(in.height) * scale - double(out_h)) / 2.0;
  const int c = in.channels;
  scratch.resize(size_t(out_w * out_h * c));
  for (int64_t y = 0; y < out_h; ++y) {
    const double sy = std::clamp((double(y) + off_y + 0.5) / scale - 0.5, 0.0, double(in.height - 1));
    const int64_t y0 = int64_t(sy), y1 = std::min(y0 + 1, in.height - 1);
    const double fy = sy - double(y0);
    for (int64_t x = 0; x < out_w; ++x) {
      const double sx = std::clamp((double(x) + off_x + 0.5) / scale - 0.5, 0.0, double(in.width - 1));
      const int64_t x0 = int64_t(sx), x1 = std::min(x0 + 1, in.width - 1);
      const double fx = sx - double(x0);
      for (int ch = 0; ch < c; ++ch) {
        auto at = [&](int64_t yy, int64_t xx) { return double(in.data[(yy * in.width + xx) * c + ch]); };
        const double v = (at(y0, x0) * (1 - fx) + at(y0, x1) * fx) * (1 - fy) + (at(y1, x0) * (1 - fx) + at(y1, x1) * fx) * fy;
        scratch[size_t((y * out_w + x) * c + ch)] = uint8_t(std::lround(std::clamp(v, 0.0, 255.0)));
      }
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
