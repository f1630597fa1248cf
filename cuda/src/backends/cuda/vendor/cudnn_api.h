// cudnn_api.h: OUR declarations of the legacy (v7/v8-style, still exported by cuDNN 9) convolution
// API that live2diff calls, so the build machines compile the vendor path without cuDNN headers; the
// library is opened with dlopen at run time (cudnn_conv.cpp). tests/vendor_conformance.cpp checks every
// value, struct layout and function type here against the real cudnn*.h on the GPU machine.
// The legacy API was chosen over the v9 backend-descriptor API because it needs a dozen plain
// functions instead of a graph of attribute-typed descriptors, which is far easier to declare right.
#pragma once

#include <cstddef>

#include <cuda_runtime.h>

namespace l2d::vendor::dnn {

struct ContextOpaque;
struct TensorOpaque;
struct FilterOpaque;
struct ConvolutionOpaque;
using Handle = ContextOpaque*;              // cudnnHandle_t
using TensorDesc = TensorOpaque*;           // cudnnTensorDescriptor_t
using FilterDesc = FilterOpaque*;           // cudnnFilterDescriptor_t
using ConvDesc = ConvolutionOpaque*;        // cudnnConvolutionDescriptor_t
using Status = int;                         // cudnnStatus_t

// cudnnConvolutionFwdAlgoPerf_t (the v7 heuristic's result).
struct FwdAlgoPerf {
  int algo;    // cudnnConvolutionFwdAlgo_t
  Status status;
  float time;
  size_t memory;
  int determinism;  // cudnnDeterminism_t
  int mathType;     // cudnnMathType_t
  int reserved[3];
};

// cudnnStatus_t
constexpr int kStatusSuccess = 0;  // CUDNN_STATUS_SUCCESS
// cudnnDataType_t
constexpr int kDataFloat = 0;  // CUDNN_DATA_FLOAT
constexpr int kDataHalf = 2;   // CUDNN_DATA_HALF
// cudnnTensorFormat_t
constexpr int kFormatNCHW = 0;  // CUDNN_TENSOR_NCHW
// cudnnConvolutionMode_t
constexpr int kCrossCorrelation = 1;  // CUDNN_CROSS_CORRELATION (what PyTorch calls convolution)
// cudnnMathType_t
constexpr int kMathTensorOp = 1;  // CUDNN_TENSOR_OP_MATH
constexpr int kMathFma = 3;       // CUDNN_FMA_MATH (no TF32: the fp32 verification mode)
// cudnnConvolutionFwdAlgo_t
constexpr int kFwdAlgoImplicitPrecompGemm = 1;  // CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM
constexpr int kFwdAlgoCount = 8;                // CUDNN_CONVOLUTION_FWD_ALGO_COUNT

using PFN_cudnnCreate = Status (*)(Handle*);
using PFN_cudnnDestroy = Status (*)(Handle);
using PFN_cudnnGetVersion = size_t (*)();
using PFN_cudnnGetErrorString = const char* (*)(Status);
using PFN_cudnnSetStream = Status (*)(Handle, cudaStream_t);
using PFN_cudnnCreateTensorDescriptor = Status (*)(TensorDesc*);
using PFN_cudnnSetTensor4dDescriptor = Status (*)(TensorDesc, int /*format*/, int /*dtype*/, int, int, int, int);
using PFN_cudnnDestroyTensorDescriptor = Status (*)(TensorDesc);
using PFN_cudnnCreateFilterDescriptor = Status (*)(FilterDesc*);
using PFN_cudnnSetFilter4dDescriptor = Status (*)(FilterDesc, int /*dtype*/, int /*format*/, int, int, int, int);
using PFN_cudnnDestroyFilterDescriptor = Status (*)(FilterDesc);
using PFN_cudnnCreateConvolutionDescriptor = Status (*)(ConvDesc*);
using PFN_cudnnSetConvolution2dDescriptor = Status (*)(ConvDesc, int, int, int, int, int, int, int /*mode*/,
                                                       int /*compute dtype*/);
using PFN_cudnnSetConvolutionMathType = Status (*)(ConvDesc, int /*math*/);
using PFN_cudnnDestroyConvolutionDescriptor = Status (*)(ConvDesc);
using PFN_cudnnGetConvolutionForwardAlgorithm_v7 = Status (*)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc,
                                                              int, int*, FwdAlgoPerf*);
using PFN_cudnnGetConvolutionForwardWorkspaceSize = Status (*)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc,
                                                               int /*algo*/, size_t*);
using PFN_cudnnConvolutionForward = Status (*)(Handle, const void*, TensorDesc, const void*, FilterDesc, const void*,
                                               ConvDesc, int /*algo*/, void*, size_t, const void*, TensorDesc, void*);
using PFN_cudnnAddTensor = Status (*)(Handle, const void*, TensorDesc, const void*, const void*, TensorDesc, void*);

#define L2D_CUDNN_SYMBOLS(X)                   \
  X(cudnnCreate)                               \
  X(cudnnDestroy)                              \
  X(cudnnGetVersion)                           \
  X(cudnnGetErrorString)                       \
  X(cudnnSetStream)                            \
  X(cudnnCreateTensorDescriptor)               \
  X(cudnnSetTensor4dDescriptor)                \
  X(cudnnDestroyTensorDescriptor)              \
  X(cudnnCreateFilterDescriptor)               \
  X(cudnnSetFilter4dDescriptor)                \
  X(cudnnDestroyFilterDescriptor)              \
  X(cudnnCreateConvolutionDescriptor)          \
  X(cudnnSetConvolution2dDescriptor)           \
  X(cudnnSetConvolutionMathType)               \
  X(cudnnDestroyConvolutionDescriptor)         \
  X(cudnnGetConvolutionForwardAlgorithm_v7)    \
  X(cudnnGetConvolutionForwardWorkspaceSize)   \
  X(cudnnConvolutionForward)                   \
  X(cudnnAddTensor)

}  // namespace l2d::vendor::dnn
