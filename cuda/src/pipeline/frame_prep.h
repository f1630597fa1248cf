// frame_prep.h: host-side preparation of incoming frames. Frames of any size are scaled so they
// cover the stream size (aspect ratio kept, antialiased bilinear like the original's torchvision
// Resize) and centre-cropped to it; frames already at
// the stream size are passed through untouched (the golden path). The similar-image
// filter's cosine similarity lives in core/frame_fit.h (the backends' default op uses it too).
#pragma once

#include <cstdint>
#include <vector>

#include "../core/frame_fit.h"  // frame_cosine_similarity

namespace l2d {

struct FrameView {
  const uint8_t* data = nullptr;
  int64_t width = 0, height = 0;
  int channels = 3;  // 3 RGB or 4 RGBA
};

// Returns a pointer to frames of exactly out_w x out_h x channels: `in.data` itself when the size
// already matches, else `scratch` filled with the resized and cropped frame.
const uint8_t* fit_frame(const FrameView& in, int64_t out_w, int64_t out_h, std::vector<uint8_t>& scratch);

}  // namespace l2d
