// cuBLASLt through our own declarations (cublaslt_api.h) and dlopen.
// Row-major to cuBLAS column-major: a row-major X [r, c] (ld) is the column-major c x r matrix X^T,
// so C = A @ B becomes C^T (N x M) = B^T (N x K) @ A^T (K x M): cuBLAS's "A" is our B and its "B" is
// our A, and a bias per column n of C is a bias per ROW of cuBLAS's D, which CUBLASLT_EPILOGUE_BIAS adds.
// A residual (linear_add) is cuBLAS's C input with beta = 1, laid out like D.
#include "cublaslt_gemm.h"

#include "../../../core/error.h"
#include "cublaslt_api.h"
#include "dynlib.h"

namespace l2d::vendor {
namespace {

struct LtLib {
  void* so = nullptr;
  std::string name, why;
#define L2D_DECLARE_FN(sym) lt::PFN_##sym sym = nullptr;
  L2D_CUBLASLT_SYMBOLS(L2D_DECLARE_FN)
#undef L2D_DECLARE_FN
};

// Loaded once per process (thread-safe static initialisation).
const LtLib& lt_lib() {
  static const LtLib lib = [] {
    LtLib l;
    l.so = open_first({"libcublasLt.so.13", "libcublasLt.so.12"}, l.name, l.why);
    if (!l.so) return l;
#define L2D_BIND_FN(sym)                      \
  if (!bind(l.so, #sym, l.sym, l.why)) {      \
    l.so = nullptr;                           \
    return l;                                 \
  }
    L2D_CUBLASLT_SYMBOLS(L2D_BIND_FN)
#undef L2D_BIND_FN
    return l;
  }();
  return lib;
}

void check(lt::Status st, const char* what) {
  if (st != lt::kStatusSuccess) fail(L2D_ERR_BACKEND, "cuBLASLt ", what, " failed with status ", st);
}

}  // namespace

struct CublasLt::Plan {
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, d = nullptr;  // cuBLAS operands: a = our B, b = our A, d = C
  lt::MatmulAlgo algo{};
  size_t workspace = 0;
  bool ok = false;
  ~Plan() {
    const LtLib& L = lt_lib();
    if (d) L.cublasLtMatrixLayoutDestroy(d);
    if (b) L.cublasLtMatrixLayoutDestroy(b);
    if (a) L.cublasLtMatrixLayoutDestroy(a);
    if (desc) L.cublasLtMatmulDescDestroy(desc);
  }
};

std::unique_ptr<CublasLt> CublasLt::open(std::string& why) {
  const LtLib& L = lt_lib();
  if (!L.so) {
    why = "cuBLASLt unavailable: " + L.why;
    return nullptr;
  }
  std::unique_ptr<CublasLt> lt(new CublasLt());
  lt::Handle h = nullptr;
  if (const lt::Status st = L.cublasLtCreate(&h); st != lt::kStatusSuccess) {
    why = "cublasLtCreate failed with status " + std::to_string(st);
    return nullptr;
  }
  lt->handle_ = h;
  lt->description_ = L.name + " (version " + std::to_string(L.cublasLtGetVersion()) + ")";
  return lt;
}

CublasLt::~CublasLt() {
  plans_.clear();
  if (handle_) lt_lib().cublasLtDestroy(static_cast<lt::Handle>(handle_));
}

CublasLt::Key CublasLt::key_of(const LtGemm& g) {
  const int flags = (g.b_nk ? 1 : 0) | (g.fp16 ? 2 : 0) | (g.bias ? 4 : 0) | (g.residual ? 8 : 0);
  return Key{g.M, g.N, g.K, g.batch, g.lda, g.a_bs, g.ldb, g.b_bs, g.ldc, g.c_bs, flags};
}

bool CublasLt::prepare(const LtGemm& g, size_t* workspace_bytes) {
  const LtLib& L = lt_lib();
  std::lock_guard<std::mutex> lock(mutex_);
  const Key key = key_of(g);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    auto plan = std::make_shared<Plan>();
    const cudaDataType_t dt = g.fp16 ? CUDA_R_16F : CUDA_R_32F;
    check(L.cublasLtMatmulDescCreate(&plan->desc, lt::kCompute32F, CUDA_R_32F), "MatmulDescCreate");
    const int32_t ta = g.b_nk ? lt::kOpT : lt::kOpN, tb = lt::kOpN;
    const uint32_t epi = g.bias ? lt::kEpilogueBias : lt::kEpilogueDefault;
    check(L.cublasLtMatmulDescSetAttribute(plan->desc, lt::kDescTransA, &ta, sizeof(ta)), "set TRANSA");
    check(L.cublasLtMatmulDescSetAttribute(plan->desc, lt::kDescTransB, &tb, sizeof(tb)), "set TRANSB");
    check(L.cublasLtMatmulDescSetAttribute(plan->desc, lt::kDescEpilogue, &epi, sizeof(epi)), "set EPILOGUE");
    // Stored (not op()) shapes, column-major.
    check(L.cublasLtMatrixLayoutCreate(&plan->a, dt, uint64_t(g.b_nk ? g.K : g.N), uint64_t(g.b_nk ? g.N : g.K),
                                       g.ldb),
          "layout A");
    check(L.cublasLtMatrixLayoutCreate(&plan->b, dt, uint64_t(g.K), uint64_t(g.M), g.lda), "layout B");
    check(L.cublasLtMatrixLayoutCreate(&plan->d, dt, uint64_t(g.N), uint64_t(g.M), g.ldc), "layout D");
    if (g.batch > 1) {
      const int32_t count = g.batch;
      const int64_t strides[3] = {g.b_bs, g.a_bs, g.c_bs};
      lt::MatrixLayout layouts[3] = {plan->a, plan->b, plan->d};
      for (int i = 0; i < 3; ++i) {
        check(L.cublasLtMatrixLayoutSetAttribute(layouts[i], lt::kLayoutBatchCount, &count, sizeof(count)),
              "set BATCH_COUNT");
        check(L.cublasLtMatrixLayoutSetAttribute(layouts[i], lt::kLayoutStridedBatchOffset, &strides[i],
                                                 sizeof(strides[i])),
              "set STRIDED_BATCH_OFFSET");
      }
    }
    lt::Preference pref = nullptr;
    check(L.cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    const uint64_t max_ws = kMaxWorkspaceBytes;
    lt::Status st = L.cublasLtMatmulPreferenceSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &max_ws, sizeof(max_ws));
    lt::HeuristicResult result{};
    int found = 0;
    if (st == lt::kStatusSuccess)
      st = L.cublasLtMatmulAlgoGetHeuristic(static_cast<lt::Handle>(handle_), plan->desc, plan->a, plan->b, plan->d,
                                            plan->d, pref, 1, &result, &found);
    L.cublasLtMatmulPreferenceDestroy(pref);
    // A heuristic failure just means "no algorithm": the caller falls back to our kernels.
    plan->ok = st == lt::kStatusSuccess && found > 0 && result.state == lt::kStatusSuccess;
    if (plan->ok) {
      plan->algo = result.algo;
      plan->workspace = result.workspaceSize;
    }
    it = plans_.emplace(key, std::move(plan)).first;
  }
  *workspace_bytes = it->second->workspace;
  return it->second->ok;
}

std::string CublasLt::run(const LtGemm& g, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const LtLib& L = lt_lib();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(key_of(g));
  L2D_ASSERT(it != plans_.end() && it->second->ok && workspace_bytes >= it->second->workspace);
  Plan& plan = *it->second;
  lt::Status st = lt::kStatusSuccess;
  const char* what = "set BIAS_POINTER";
  if (g.bias) {
    const void* bias = g.bias;
    st = L.cublasLtMatmulDescSetAttribute(plan.desc, lt::kDescBiasPointer, &bias, sizeof(bias));
  }
  if (st == lt::kStatusSuccess) {
    what = "Matmul";
    // D = alpha (A B) + beta C + bias: a residual is cuBLAS's C (same layout as D), else beta = 0 and
    // C is D itself (not read).
    const float alpha = 1.f, beta = g.residual ? 1.f : 0.f;
    const void* c = g.residual ? g.residual : g.C;
    st = L.cublasLtMatmul(static_cast<lt::Handle>(handle_), plan.desc, &alpha, g.B, plan.a, g.A, plan.b, &beta, c,
                          plan.d, g.C, plan.d, &plan.algo, workspace, workspace_bytes, stream);
  }
  if (st == lt::kStatusSuccess) return "";
  plan.ok = false;
  return std::string("cuBLASLt ") + what + " failed with status " + std::to_string(st);
}

}  // namespace l2d::vendor
