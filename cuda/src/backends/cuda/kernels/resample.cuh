// resample.cuh: nearest upsampling, bilinear resize and max pooling on NCHW planes (PyTorch
// index formulas, evaluated in fp32 exactly as the CPU oracle does).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace l2d::cuda {

// x [NC, H, W] -> y [NC, Ho, Wo]
void upsample_nearest_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, bool fp16,
                           cudaStream_t stream);
void resize_bilinear_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, bool align_corners,
                          bool fp16, cudaStream_t stream);
void max_pool2d_cuda(const void* x, void* y, int64_t NC, int H, int W, int Ho, int Wo, int kernel, int stride_h,
                     int stride_w, int pad_top, int pad_left, bool fp16, cudaStream_t stream);

}  // namespace l2d::cuda
