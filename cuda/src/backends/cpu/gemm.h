// gemm.h: the CPU backend's one matrix multiply, C[M,N] = A[M,K] B[K,N] (+ C when accumulate),
// fp32, row-major with leading dimensions, either operand optionally transposed. Everything heavy
// on the CPU (conv via im2col, linear, attention) ends here, so it is packed and vectorised.
#pragma once

#include <cstdint>

namespace l2d::cpu {

class ThreadPool;

struct GemmArgs {
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  bool trans_a;  // A is stored as [K, M]
  const float* B;
  int64_t ldb;
  bool trans_b;  // B is stored as [N, K]
  float* C;
  int64_t ldc;
  bool accumulate;  // C += A B instead of C = A B
};

// Multithreaded over N (or M when N is small) when pool is non-null.
void gemm(const GemmArgs& args, ThreadPool* pool);

}  // namespace l2d::cpu
