// frame_prep.h: host-side preparation of incoming frames. Frames of any size are scaled so they
// cover the stream size (aspect ratio kept, antialiased bilinear like the original's torchvision
// Resize) and centre-cropped to it; frames already at
// the stream size are passed through untouched (the golden path). Also the cosine similarity
// used by the similar-image filter, computed on the host bytes the frame arrives in, so the filter
// costs no device round trip.
#pragma once

#include <cstdint>
#include <vector>

namespace l2d {

struct FrameView {
  const uint8_t* data = nullptr;
  int64_t width = 0, height = 0;
  int channels = 3;  // 3 RGB or 4 RGBA
};

// Returns a pointer to frames of exactly out_w x out_h x channels: `in.data` itself when the size
// already matches, else `scratch` filled with the resized and cropped frame.
const uint8_t* fit_frame(const FrameView& in, int64_t out_w, int64_t out_h, std::vector<uint8_t>& scratch);

// Cosine similarity of two same-sized frames mapped to [-1, 1] (RGB channels only).
double frame_cosine_similarity(const uint8_t* a, const uint8_t* b, int64_t pixels, int channels);

}  // namespace l2d
