// cudnn_conv.h: NCHW convolutions through cuDNN's legacy convolution API, opened at run time
// (libcudnn.so.9, then .8). Without the library open() returns null with the reason and the backend
// keeps to its own kernels.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace l2d::vendor {

// y [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, C, KH, KW]) + bias[o] (bias may be null), symmetric
// zero padding (cuDNN has no asymmetric padding: the caller keeps those on its own kernels).
// conv2d_fused: bias_per_image (bias [N, O], row n for image n) and residual [N, O, Ho, Wo] (may be
// null). cuDNN adds each with its own cudnnAddTensor pass after the convolution (the legacy fused
// call, cudnnConvolutionBiasActivationForward, has no per-image bias): extra_calls() counts them.
struct DnnConv {
  int N = 0, C = 0, H = 0, W = 0, O = 0, KH = 0, KW = 0;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1;
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  bool bias_per_image = false;
  const void* residual = nullptr;
  void* y = nullptr;
  bool fp16 = true;  // fp16 tensors + tensor cores (fp32 accumulate), else fp32 with FMA math (no TF32)
  // cuDNN calls run() makes beyond the convolution itself (one cudnnAddTensor per bias and residual).
  int extra_calls() const { return (bias ? 1 : 0) + (residual ? 1 : 0); }
};

class Cudnn {
 public:
  static std::unique_ptr<Cudnn> open(std::string& why);
  ~Cudnn();
  Cudnn(const Cudnn&) = delete;
  Cudnn& operator=(const Cudnn&) = delete;

  // "libcudnn.so.9 (version 91000)".
  const std::string& description() const { return description_; }

  // Chooses an algorithm once per shape (cuDNN's v7 heuristic, no timing runs); false when cuDNN
  // rejects the problem. *workspace_bytes: what run() needs.
  bool prepare(const DnnConv& c, size_t* workspace_bytes);
  // Runs c on stream (prepare(c) must have returned true). A cuDNN error status comes back as its
  // message (empty = success) and retires the shape's plan, so the caller can recompute the whole
  // output with its own kernels (a failing call writes nothing the fallback does not overwrite).
  std::string run(const DnnConv& c, void* workspace, size_t workspace_bytes, cudaStream_t stream);

  static constexpr size_t kMaxWorkspaceBytes = size_t(256) << 20;

 private:
  struct Plan;
  using Key = std::array<int, 12>;
  static Key key_of(const DnnConv& c);
  Cudnn() = default;

  void* handle_ = nullptr;
  std::string description_;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<Plan>> plans_;
};

}  // namespace l2d::vendor
