// frame_fit.h: the geometry and resampling weights of fitting a camera frame to the stream size:
// scale so the frame covers out_w x out_h (aspect kept), resample with PIL / torchvision
// "bilinear, antialias=True" weights (a triangle filter whose support widens with the downscale),
// crop the centre. Shared by the host path (pipeline/frame_prep.cpp, double precision) and the
// backends' image_fit_from_u8 op (the same weights as float tables, so CPU and CUDA agree).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace l2d {

// Weights of one axis: output index o (of the resized axis, offset by `first`) reads inputs
// [start[o], start[o] + weights[o].size()).
struct AxisWeights {
  std::vector<int64_t> start;
  std::vector<std::vector<double>> weights;
};
AxisWeights axis_weights(int64_t in, double resized, int64_t first, int64_t count);

// Both axes of one fit (in_w x in_h -> out_w x out_h), already offset by the centre crop.
struct FitWeights {
  AxisWeights x, y;
};
FitWeights fit_weights(int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h);

// The same weights as dense float tables for kernels: taps per output padded with zero weights to
// the axis maximum; start[o] + taps <= in always holds (starts are pulled back where needed).
struct FitTables {
  int taps_x = 0, taps_y = 0;
  std::vector<int32_t> x_start, y_start;  // [out_w], [out_h]
  std::vector<float> x_w, y_w;            // [out_w, taps_x], [out_h, taps_y]
};
FitTables fit_tables(int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h);

// Throws L2D_ERR_INVALID_ARGUMENT for a null frame, channels other than 3/4, or a frame or output
// size outside 1..16384.
void check_fit_args(const uint8_t* frame, int64_t h, int64_t w, int channels, int64_t out_h, int64_t out_w);

// The reference of Backend::image_fit_from_u8, in float with the exact operation order of the
// CUDA kernel (fit_level below), so both give the same levels: frame uint8 [in_h, in_w, channels]
// -> out [3, out_h, out_w] = level / 255.
void fit_frame_levels(const uint8_t* frame, int64_t in_w, int channels, const FitTables& t, int64_t out_w,
                      int64_t out_h, float* out);

// One output value before the division by 255: sum over the y taps of (sum over the x taps of
// weight * pixel), fused multiply-adds in tap order, clamped to [0, 255] and rounded half up.
#if defined(__CUDACC__)
#define L2D_FIT_HD __host__ __device__ __forceinline__
#else
#define L2D_FIT_HD inline
#endif
L2D_FIT_HD float fit_level(const uint8_t* frame, int64_t in_w, int channels, int c, int32_t xs, const float* wx,
                           int taps_x, int32_t ys, const float* wy, int taps_y) {
  float acc = 0.f;
  for (int ky = 0; ky < taps_y; ++ky) {
    const uint8_t* row = frame + ((int64_t(ys) + ky) * in_w + xs) * channels + c;
    float racc = 0.f;
    for (int kx = 0; kx < taps_x; ++kx) racc = fmaf(wx[kx], float(row[int64_t(kx) * channels]), racc);
    acc = fmaf(wy[ky], racc, acc);
  }
  return floorf(fminf(fmaxf(acc, 0.f), 255.f) + 0.5f);
}

// Cosine similarity of two same-sized uint8 frames [pixels, channels] mapped to [-1, 1] (RGB
// channels only; alpha ignored), summed in double, pixel by pixel: the similar-image filter.
double frame_cosine_similarity(const uint8_t* a, const uint8_t* b, int64_t pixels, int channels);

}  // namespace l2d
