#include "frame_fit.h"

#include <algorithm>
#include <cmath>

#include "error.h"

namespace l2d {

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

FitWeights fit_weights(int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h) {
  // Scale so the frame covers the output (aspect kept), then crop the centre. (The original's
  // test.py resizes the shorter side to min(H, W) and centre-crops: the same whenever that covers
  // the output; where it would pad, covering keeps the frame full.)
  const double scale = std::max(double(out_w) / double(in_w), double(out_h) / double(in_h));
  const double rw = double(in_w) * scale, rh = double(in_h) * scale;
  const int64_t off_x = int64_t((rw - double(out_w)) / 2.0), off_y = int64_t((rh - double(out_h)) / 2.0);
  return {axis_weights(in_w, rw, off_x, out_w), axis_weights(in_h, rh, off_y, out_h)};
}

namespace {

void dense_axis(const AxisWeights& a, int64_t in, int& taps, std::vector<int32_t>& start, std::vector<float>& w) {
  size_t most = 1;
  for (const auto& v : a.weights) most = std::max(most, v.size());
  L2D_ASSERT(int64_t(most) <= in);
  taps = int(most);
  start.assign(a.start.size(), 0);
  w.assign(a.start.size() * most, 0.f);
  for (size_t o = 0; o < a.start.size(); ++o) {
    // Pull the window back so it stays inside the input; the shifted taps get the weights.
    const int64_t s = std::min<int64_t>(a.start[o], in - int64_t(most));
    start[o] = int32_t(s);
    for (size_t k = 0; k < a.weights[o].size(); ++k) w[o * most + size_t(a.start[o] - s) + k] = float(a.weights[o][k]);
  }
}

}  // namespace

FitTables fit_tables(int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h) {
  const FitWeights fw = fit_weights(in_w, in_h, out_w, out_h);
  FitTables t;
  dense_axis(fw.x, in_w, t.taps_x, t.x_start, t.x_w);
  dense_axis(fw.y, in_h, t.taps_y, t.y_start, t.y_w);
  return t;
}

void check_fit_args(const uint8_t* frame, int64_t h, int64_t w, int channels, int64_t out_h, int64_t out_w) {
  L2D_REQUIRE(frame != nullptr, "frame data must not be null");
  L2D_REQUIRE(channels == 3 || channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", channels);
  L2D_REQUIRE(w > 0 && h > 0 && w <= 16384 && h <= 16384, "frame size ", w, "x", h, " is outside 1..16384");
  L2D_REQUIRE(out_w > 0 && out_h > 0 && out_w <= 16384 && out_h <= 16384, "output size ", out_w, "x", out_h,
              " is outside 1..16384");
}

void fit_frame_levels(const uint8_t* frame, int64_t in_w, int channels, const FitTables& t, int64_t out_w,
                      int64_t out_h, float* out) {
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < out_h; ++y)
      for (int64_t x = 0; x < out_w; ++x)
        out[(c * out_h + y) * out_w + x] =
            fit_level(frame, in_w, channels, c, t.x_start[size_t(x)], t.x_w.data() + x * t.taps_x, t.taps_x,
                      t.y_start[size_t(y)], t.y_w.data() + y * t.taps_y, t.taps_y) /
            255.f;
}

// The similar-image filter's measure (LiveStream): the host path calls it on fitted bytes, the
// backends' default image_cosine_similarity on the levels of fitted images.
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
