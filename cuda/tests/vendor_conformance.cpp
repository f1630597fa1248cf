// vendor_conformance: checks OUR cuBLASLt / cuDNN declarations (src/backends/cuda/vendor/*_api.h),
// which the build machines compile without vendor headers, against the REAL headers, at compile time.
// Built only where those headers exist (scripts/gpu-check.sh on the GPU machine):
//   g++ -std=c++17 -Wno-deprecated-declarations -I/usr/local/cuda/include -I<cudnn>/include -Icuda/src
//       cuda/tests/vendor_conformance.cpp -o vendor_conformance && ./vendor_conformance
// A wrong enum value, struct layout or prototype is a compile error naming the symbol.
#include <cublasLt.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdio>
#include <type_traits>

#include "backends/cuda/vendor/cublaslt_api.h"
#include "backends/cuda/vendor/cudnn_api.h"

namespace lt = l2d::vendor::lt;
namespace dnn = l2d::vendor::dnn;

// ---- the real type -> our type, recursively through pointers, const and function types ----
template <typename T>
struct Ours {
  using type = T;
};
template <typename T>
struct Ours<T*> {
  using type = typename Ours<T>::type*;
};
template <typename T>
struct Ours<const T> {
  using type = const typename Ours<T>::type;
};
template <typename R, typename... A>
struct Ours<R (*)(A...)> {
  using type = typename Ours<R>::type (*)(typename Ours<A>::type...);
};
#define L2D_MAP(real, ours) \
  template <>               \
  struct Ours<real> {       \
    using type = ours;      \
  };
// Enums travel as int in our declarations: same size and values (checked below).
#define L2D_ENUM(real)                                                  \
  L2D_MAP(real, int)                                                    \
  static_assert(sizeof(real) == sizeof(int), #real " is not int-sized");

L2D_MAP(cublasLtContext, lt::ContextOpaque)
L2D_MAP(cublasLtMatmulDescOpaque_t, lt::MatmulDescOpaque)
L2D_MAP(cublasLtMatrixLayoutOpaque_t, lt::MatrixLayoutOpaque)
L2D_MAP(cublasLtMatmulPreferenceOpaque_t, lt::PreferenceOpaque)
L2D_MAP(cublasLtMatmulAlgo_t, lt::MatmulAlgo)
L2D_MAP(cublasLtMatmulHeuristicResult_t, lt::HeuristicResult)
L2D_ENUM(cublasStatus_t)
L2D_ENUM(cublasComputeType_t)
L2D_ENUM(cublasLtMatmulDescAttributes_t)
L2D_ENUM(cublasLtMatrixLayoutAttribute_t)
L2D_ENUM(cublasLtMatmulPreferenceAttributes_t)

L2D_MAP(cudnnContext, dnn::ContextOpaque)
L2D_MAP(cudnnTensorStruct, dnn::TensorOpaque)
L2D_MAP(cudnnFilterStruct, dnn::FilterOpaque)
L2D_MAP(cudnnConvolutionStruct, dnn::ConvolutionOpaque)
L2D_MAP(cudnnConvolutionFwdAlgoPerf_t, dnn::FwdAlgoPerf)
L2D_ENUM(cudnnStatus_t)
L2D_ENUM(cudnnDataType_t)
L2D_ENUM(cudnnTensorFormat_t)
L2D_ENUM(cudnnConvolutionMode_t)
L2D_ENUM(cudnnMathType_t)
L2D_ENUM(cudnnConvolutionFwdAlgo_t)
L2D_ENUM(cudnnDeterminism_t)

// ---- prototypes ----
#define L2D_CHECK_LT(sym) \
  static_assert(std::is_same_v<Ours<decltype(&::sym)>::type, lt::PFN_##sym>, "prototype of " #sym " differs");
L2D_CUBLASLT_SYMBOLS(L2D_CHECK_LT)
#define L2D_CHECK_DNN(sym) \
  static_assert(std::is_same_v<Ours<decltype(&::sym)>::type, dnn::PFN_##sym>, "prototype of " #sym " differs");
L2D_CUDNN_SYMBOLS(L2D_CHECK_DNN)

// ---- enum values ----
static_assert(lt::kStatusSuccess == CUBLAS_STATUS_SUCCESS);
static_assert(lt::kCompute32F == CUBLAS_COMPUTE_32F);
static_assert(lt::kOpN == CUBLAS_OP_N && lt::kOpT == CUBLAS_OP_T);
static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA);
static_assert(lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB);
static_assert(lt::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE);
static_assert(lt::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER);
static_assert(lt::kEpilogueDefault == CUBLASLT_EPILOGUE_DEFAULT);
static_assert(lt::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS);
static_assert(lt::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
static_assert(lt::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);

static_assert(dnn::kStatusSuccess == CUDNN_STATUS_SUCCESS);
static_assert(dnn::kDataFloat == CUDNN_DATA_FLOAT && dnn::kDataHalf == CUDNN_DATA_HALF);
static_assert(dnn::kFormatNCHW == CUDNN_TENSOR_NCHW);
static_assert(dnn::kCrossCorrelation == CUDNN_CROSS_CORRELATION);
static_assert(dnn::kMathTensorOp == CUDNN_TENSOR_OP_MATH && dnn::kMathFma == CUDNN_FMA_MATH);
static_assert(dnn::kFwdAlgoImplicitPrecompGemm == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
static_assert(dnn::kFwdAlgoCount == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);

// ---- struct layouts ----
#define L2D_SAME_FIELD(ours, real, field)                                                   \
  static_assert(offsetof(ours, field) == offsetof(real, field) &&                           \
                    sizeof(ours::field) == sizeof(real::field),                             \
                "field " #field " of " #real " differs");
static_assert(sizeof(lt::MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t));
static_assert(sizeof(lt::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t));
L2D_SAME_FIELD(lt::HeuristicResult, cublasLtMatmulHeuristicResult_t, algo)
L2D_SAME_FIELD(lt::HeuristicResult, cublasLtMatmulHeuristicResult_t, workspaceSize)
L2D_SAME_FIELD(lt::HeuristicResult, cublasLtMatmulHeuristicResult_t, state)
L2D_SAME_FIELD(lt::HeuristicResult, cublasLtMatmulHeuristicResult_t, wavesCount)
static_assert(sizeof(dnn::FwdAlgoPerf) == sizeof(cudnnConvolutionFwdAlgoPerf_t));
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, algo)
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, status)
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, time)
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, memory)
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, determinism)
L2D_SAME_FIELD(dnn::FwdAlgoPerf, cudnnConvolutionFwdAlgoPerf_t, mathType)

int main() {
  std::printf("vendor declarations conform to cublasLt.h %d and cudnn.h %d.%d.%d\n", CUBLAS_VERSION, CUDNN_MAJOR,
              CUDNN_MINOR, CUDNN_PATCHLEVEL);
  return 0;
}
