// dense_router.h: which implementation runs each convolution / matrix product of the CUDA backend.
//   simple: the original tiled kernels (gemm.cu), the verified fallback for every shape and dtype;
//   own:    the tensor-core pipeline (gemm_tc.cu), fp16 only, for the shapes gemm_tc_supported() takes;
//   vendor: cuDNN for convolutions, cuBLASLt for linear / matmul, when the libraries load at run time.
// L2D_KERNELS=simple|own|vendor (read when the context is created) forces one path; a forced path that
// cannot take an op falls back vendor -> own -> simple, and the counters record what actually ran.
// L2D_KERNELS=tune measures, on each shape's first call, every path that can run it (CUDA events and a
// sync: run a warm-up frame before any graph capture) and keeps the fastest for that shape; the
// candidates' milliseconds are in info_json()'s "tuned".
// Default ("auto", a fixed table until there are measurements): fp16: vendor when loaded, else own
// where supported, else simple; fp32 (the verification mode): simple.
// A vendor call that returns an error status is counted (vendor_errors), its shape retired from the
// vendor path, and the op recomputed on our kernels.
// L2D_PROFILE_DENSE=1 also times every routed op with CUDA events (adds a sync when read; not for
// graph capture), reported per class by info_json().
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/gemm.cuh"
#include "vendor/cublaslt_gemm.h"
#include "vendor/cudnn_conv.h"

namespace l2d::cuda {

class CudaBackend;

enum class KernelPath : int { Simple = 0, Own = 1, Vendor = 2 };
const char* kernel_path_name(KernelPath p);

class DenseRouter {
 public:
  enum class Mode { Auto, Simple, Own, Vendor, Tune };
  // Reads L2D_KERNELS / L2D_PROFILE_DENSE and opens the vendor libraries unless the mode excludes them.
  // Throws L2D_ERR_INVALID_ARGUMENT for an unknown L2D_KERNELS value.
  explicit DenseRouter(bool fp16);
  ~DenseRouter();

  // A convolution as an implicit GEMM g (gemm.cuh) and, when cuDNN can express it (symmetric
  // padding), as dnn (else null). cls names the layer class for the counters ("conv3x3/64x64").
  void conv2d(CudaBackend& be, const GemmParams& g, const vendor::DnnConv* dnn, const std::string& cls);
  // A linear / matmul as g and, when cuBLASLt can express it, as lt (else null).
  void gemm(CudaBackend& be, const GemmParams& g, const vendor::LtGemm* lt, const std::string& cls);
  // linear_geglu: fused is the one-GEMM form (kEpiGeglu, gemm_tc_supported), lin the plain linear into a
  // [M, 2C] scratch (C unset; lt its cuBLASLt form or null). Runs where the linear would run: vendor
  // (linear, then the geglu kernel) when the vendor path would take the linear, else the fused own kernel
  // (or, L2D_KERNELS=simple, the simple linear + geglu); tune times the three and keeps the fastest per
  // shape. Counted as class cls, by the path of its GEMM.
  void linear_geglu(CudaBackend& be, const GemmParams& fused, const GemmParams& lin, const vendor::LtGemm* lt,
                    const std::string& cls);
  // Ops that only the simple kernels implement (conv_transpose2d): counted, then run.
  void simple_only(CudaBackend& be, const GemmParams& g, const std::string& cls);

  // JSON: mode, default rule, vendor libraries (or why not), and per class and path: calls, GFLOP
  // and, when profiling, milliseconds. Synchronises the stream when profiling.
  std::string info_json();

 private:
  struct Counter {
    int64_t calls = 0;
    double flops = 0;
    double ms = 0;
  };
  struct Pending {
    cudaEvent_t start, stop;
    std::string cls;
    KernelPath path;
  };
  // One way to run an op; false when it could not (vendor declined or failed: nothing usable written).
  struct Candidate {
    KernelPath path;
    std::function<bool()> run;
  };
  bool vendor_allowed() const;
  // Runs the first candidate that succeeds (tune: the shape's measured winner first).
  void route(CudaBackend& be, const std::string& cls, const std::string& key, double flops,
             std::vector<Candidate>& cands);
  void tune(CudaBackend& be, const std::string& cls, const std::string& key, double flops,
            std::vector<Candidate>& cands);
  bool own_ok(const GemmParams& g) const;
  void run_own(CudaBackend& be, const GemmParams& g);
  // Records the op (and its events when profiling) around fn.
  template <typename Fn>
  void record(cudaStream_t s, const std::string& cls, KernelPath path, double flops, Fn&& fn);
  void fold_events();
  // A vendor call returned an error status (nothing usable written): counted, reported, recomputed.
  void note_vendor_error(const std::string& err);

  bool fp16_;
  Mode mode_ = Mode::Auto;
  bool profile_ = false;
  std::unique_ptr<vendor::CublasLt> lt_;
  std::unique_ptr<vendor::Cudnn> dnn_;
  std::string lt_why_, dnn_why_;
  int64_t vendor_errors_ = 0;
  std::string last_vendor_error_;
  std::map<std::string, std::array<Counter, 3>> counters_;
  std::vector<Pending> pending_;
  std::map<std::string, KernelPath> tuned_;       // tune: shape key -> fastest path
  std::map<std::string, std::string> tune_log_;  // tune: "class key" -> "own=0.41 vendor=0.38 ..."
};

}  // namespace l2d::cuda
