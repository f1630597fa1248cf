// cublaslt_gemm.h: GEMMs through cuBLASLt, opened at run time (libcublasLt.so.13, then .12). Without the
// library open() returns null with the reason and the backend keeps to its own kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

namespace l2d::vendor {

// A GEMM in the backend's row-major terms (gemm.cuh): C[z] (M x N) = A[z] (M x K, row-major, lda)
// @ B[z](k, n) + bias[n] (+ residual[z]); B is [K, N] (ldb) or, when b_nk, [N, K] (a PyTorch Linear weight).
// Batch strides of 0 broadcast an operand.
struct LtGemm {
  int64_t M = 0, N = 0, K = 0;
  int batch = 1;
  const void* A = nullptr;
  int64_t lda = 0, a_bs = 0;
  const void* B = nullptr;
  int64_t ldb = 0, b_bs = 0;
  bool b_nk = false;
  void* C = nullptr;
  int64_t ldc = 0, c_bs = 0;
  const void* bias = nullptr;  // per column n (the bias of a Linear), or null
  // Added after the bias (cuBLAS's C with beta = 1; D = C of this struct), laid out like C, or null.
  const void* residual = nullptr;
  bool fp16 = true;            // fp16 storage (fp32 accumulate), else fp32 throughout (no TF32)
};

class CublasLt {
 public:
  // Opens the library (once per process) and creates a handle. Null, with `why` set, when the
  // library or one of its symbols is missing or the handle cannot be created.
  static std::unique_ptr<CublasLt> open(std::string& why);
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // "libcublasLt.so.13 (version 130100)".
  const std::string& description() const { return description_; }

  // Chooses (once per problem shape, cached) an algorithm; false when cuBLASLt has none for g (the
  // caller falls back). *workspace_bytes: what run() needs.
  bool prepare(const LtGemm& g, size_t* workspace_bytes);
  // Runs g on stream (prepare(g) must have returned true). A cuBLASLt error status comes back as a
  // message (empty = success) and retires the shape's plan; the caller then recomputes with its own kernels.
  std::string run(const LtGemm& g, void* workspace, size_t workspace_bytes, cudaStream_t stream);

  static constexpr size_t kMaxWorkspaceBytes = size_t(32) << 20;

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;
  static Key key_of(const LtGemm& g);
  CublasLt() = default;

  void* handle_ = nullptr;
  std::string description_;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<Plan>> plans_;
};

}  // namespace l2d::vendor
