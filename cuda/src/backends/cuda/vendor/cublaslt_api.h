// cublaslt_api.h: OUR declarations of the part of cuBLASLt that live2diff calls, so that the build
// machines (nvcc + cudart, no cuBLAS headers) compile the vendor path; the library itself is opened
// with dlopen at run time (cublaslt_gemm.cpp). Values and prototypes are copied from the public cuBLASLt
// documentation; tests/vendor_conformance.cpp checks every one of them against the real cublasLt.h
// (static_assert per enum value, struct layout, and function type) on the GPU machine.
// Handles are pointers to our own incomplete structs (never dereferenced); enums are plain ints.
#pragma once

#include <library_types.h>  // cudaDataType_t (part of the CUDA runtime headers)

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace l2d::vendor::lt {

struct ContextOpaque;
struct MatmulDescOpaque;
struct MatrixLayoutOpaque;
struct PreferenceOpaque;
using Handle = ContextOpaque*;           // cublasLtHandle_t
using MatmulDesc = MatmulDescOpaque*;    // cublasLtMatmulDesc_t
using MatrixLayout = MatrixLayoutOpaque*;  // cublasLtMatrixLayout_t
using Preference = PreferenceOpaque*;    // cublasLtMatmulPreference_t
using Status = int;                      // cublasStatus_t

// cublasLtMatmulAlgo_t (opaque, by value).
struct MatmulAlgo {
  uint64_t data[8];
};
// cublasLtMatmulHeuristicResult_t.
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// cublasStatus_t
constexpr int kStatusSuccess = 0;  // CUBLAS_STATUS_SUCCESS
// cublasComputeType_t
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F
// cublasOperation_t
constexpr int kOpN = 0;  // CUBLAS_OP_N
constexpr int kOpT = 1;  // CUBLAS_OP_T
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3;       // CUBLASLT_MATMUL_DESC_TRANSA (int32)
constexpr int kDescTransB = 4;       // CUBLASLT_MATMUL_DESC_TRANSB (int32)
constexpr int kDescEpilogue = 7;     // CUBLASLT_MATMUL_DESC_EPILOGUE (uint32)
constexpr int kDescBiasPointer = 8;  // CUBLASLT_MATMUL_DESC_BIAS_POINTER (const void*)
// cublasLtEpilogue_t
constexpr int kEpilogueDefault = 1;  // CUBLASLT_EPILOGUE_DEFAULT
constexpr int kEpilogueBias = 4;     // CUBLASLT_EPILOGUE_BIAS: D += bias[row of D]
// cublasLtMatrixLayoutAttribute_t
constexpr int kLayoutBatchCount = 5;          // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (int32)
constexpr int kLayoutStridedBatchOffset = 6;  // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (int64)
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)

// Function types, one per symbol (name = the exported symbol).
using PFN_cublasLtCreate = Status (*)(Handle*);
using PFN_cublasLtDestroy = Status (*)(Handle);
using PFN_cublasLtGetVersion = size_t (*)();
using PFN_cublasLtMatmulDescCreate = Status (*)(MatmulDesc*, int /*cublasComputeType_t*/, cudaDataType_t);
using PFN_cublasLtMatmulDescDestroy = Status (*)(MatmulDesc);
using PFN_cublasLtMatmulDescSetAttribute = Status (*)(MatmulDesc, int /*attr*/, const void*, size_t);
using PFN_cublasLtMatrixLayoutCreate = Status (*)(MatrixLayout*, cudaDataType_t, uint64_t, uint64_t, int64_t);
using PFN_cublasLtMatrixLayoutDestroy = Status (*)(MatrixLayout);
using PFN_cublasLtMatrixLayoutSetAttribute = Status (*)(MatrixLayout, int /*attr*/, const void*, size_t);
using PFN_cublasLtMatmulPreferenceCreate = Status (*)(Preference*);
using PFN_cublasLtMatmulPreferenceDestroy = Status (*)(Preference);
using PFN_cublasLtMatmulPreferenceSetAttribute = Status (*)(Preference, int /*attr*/, const void*, size_t);
using PFN_cublasLtMatmulAlgoGetHeuristic = Status (*)(Handle, MatmulDesc, MatrixLayout, MatrixLayout, MatrixLayout,
                                                      MatrixLayout, Preference, int, HeuristicResult*, int*);
using PFN_cublasLtMatmul = Status (*)(Handle, MatmulDesc, const void*, const void*, MatrixLayout, const void*,
                                      MatrixLayout, const void*, const void*, MatrixLayout, void*, MatrixLayout,
                                      const MatmulAlgo*, void*, size_t, cudaStream_t);

// X-macro over every symbol we load (the loader and the conformance check share it).
#define L2D_CUBLASLT_SYMBOLS(X)           \
  X(cublasLtCreate)                       \
  X(cublasLtDestroy)                      \
  X(cublasLtGetVersion)                   \
  X(cublasLtMatmulDescCreate)             \
  X(cublasLtMatmulDescDestroy)            \
  X(cublasLtMatmulDescSetAttribute)       \
  X(cublasLtMatrixLayoutCreate)           \
  X(cublasLtMatrixLayoutDestroy)          \
  X(cublasLtMatrixLayoutSetAttribute)     \
  X(cublasLtMatmulPreferenceCreate)       \
  X(cublasLtMatmulPreferenceDestroy)      \
  X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatmulAlgoGetHeuristic)       \
  X(cublasLtMatmul)

}  // namespace l2d::vendor::lt
