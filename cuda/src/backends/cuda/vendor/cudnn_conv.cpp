// cuDNN (legacy convolution API) through our own declarations (cudnn_api.h) and dlopen.
#include "cudnn_conv.h"

#include "../../../core/error.h"
#include "cudnn_api.h"
#include "dynlib.h"

namespace l2d::vendor {
namespace {

struct DnnLib {
  void* so = nullptr;
  std::string name, why;
#define L2D_DECLARE_FN(sym) dnn::PFN_##sym sym = nullptr;
  L2D_CUDNN_SYMBOLS(L2D_DECLARE_FN)
#undef L2D_DECLARE_FN
};

const DnnLib& dnn_lib() {
  static const DnnLib lib = [] {
    DnnLib l;
    l.so = open_first({"libcudnn.so.9", "libcudnn.so.8"}, l.name, l.why);
    if (!l.so) return l;
#define L2D_BIND_FN(sym)                      \
  if (!bind(l.so, #sym, l.sym, l.why)) {      \
    l.so = nullptr;                           \
    return l;                                 \
  }
    L2D_CUDNN_SYMBOLS(L2D_BIND_FN)
#undef L2D_BIND_FN
    return l;
  }();
  return lib;
}

void check(dnn::Status st, const char* what) {
  if (st != dnn::kStatusSuccess)
    fail(L2D_ERR_BACKEND, "cuDNN ", what, " failed: ", dnn_lib().cudnnGetErrorString(st), " (", st, ")");
}

}  // namespace

struct Cudnn::Plan {
  dnn::TensorDesc x = nullptr, y = nullptr, bias = nullptr;
  dnn::FilterDesc w = nullptr;
  dnn::ConvDesc conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
  bool ok = false;
  ~Plan() {
    const DnnLib& L = dnn_lib();
    if (conv) L.cudnnDestroyConvolutionDescriptor(conv);
    if (w) L.cudnnDestroyFilterDescriptor(w);
    if (bias) L.cudnnDestroyTensorDescriptor(bias);
    if (y) L.cudnnDestroyTensorDescriptor(y);
    if (x) L.cudnnDestroyTensorDescriptor(x);
  }
};

std::unique_ptr<Cudnn> Cudnn::open(std::string& why) {
  const DnnLib& L = dnn_lib();
  if (!L.so) {
    why = "cuDNN unavailable: " + L.why;
    return nullptr;
  }
  std::unique_ptr<Cudnn> d(new Cudnn());
  dnn::Handle h = nullptr;
  if (const dnn::Status st = L.cudnnCreate(&h); st != dnn::kStatusSuccess) {
    why = std::string("cudnnCreate failed: ") + L.cudnnGetErrorString(st);
    return nullptr;
  }
  d->handle_ = h;
  d->description_ = L.name + " (version " + std::to_string(L.cudnnGetVersion()) + ")";
  return d;
}

Cudnn::~Cudnn() {
  plans_.clear();
  if (handle_) dnn_lib().cudnnDestroy(static_cast<dnn::Handle>(handle_));
}

Cudnn::Key Cudnn::key_of(const DnnConv& c) {
  return Key{c.N, c.C, c.H, c.W, c.O, c.KH, c.KW, c.pad_h, c.pad_w, c.stride_h, c.stride_w,
             (c.fp16 ? 1 : 0) | (c.bias ? 2 : 0) | (c.bias_per_image ? 4 : 0)};
}

bool Cudnn::prepare(const DnnConv& c, size_t* workspace_bytes) {
  const DnnLib& L = dnn_lib();
  std::lock_guard<std::mutex> lock(mutex_);
  const Key key = key_of(c);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    auto plan = std::make_shared<Plan>();
    const int dt = c.fp16 ? dnn::kDataHalf : dnn::kDataFloat;
    const int Ho = (c.H + 2 * c.pad_h - c.KH) / c.stride_h + 1, Wo = (c.W + 2 * c.pad_w - c.KW) / c.stride_w + 1;
    check(L.cudnnCreateTensorDescriptor(&plan->x), "CreateTensorDescriptor");
    check(L.cudnnCreateTensorDescriptor(&plan->y), "CreateTensorDescriptor");
    check(L.cudnnCreateTensorDescriptor(&plan->bias), "CreateTensorDescriptor");
    check(L.cudnnCreateFilterDescriptor(&plan->w), "CreateFilterDescriptor");
    check(L.cudnnCreateConvolutionDescriptor(&plan->conv), "CreateConvolutionDescriptor");
    check(L.cudnnSetTensor4dDescriptor(plan->x, dnn::kFormatNCHW, dt, c.N, c.C, c.H, c.W), "SetTensor4dDescriptor x");
    check(L.cudnnSetTensor4dDescriptor(plan->y, dnn::kFormatNCHW, dt, c.N, c.O, Ho, Wo), "SetTensor4dDescriptor y");
    check(L.cudnnSetTensor4dDescriptor(plan->bias, dnn::kFormatNCHW, dt, c.bias_per_image ? c.N : 1, c.O, 1, 1),
          "SetTensor4dDescriptor bias");
    check(L.cudnnSetFilter4dDescriptor(plan->w, dt, dnn::kFormatNCHW, c.O, c.C, c.KH, c.KW), "SetFilter4dDescriptor");
    check(L.cudnnSetConvolution2dDescriptor(plan->conv, c.pad_h, c.pad_w, c.stride_h, c.stride_w, 1, 1,
                                            dnn::kCrossCorrelation, dnn::kDataFloat),
          "SetConvolution2dDescriptor");
    check(L.cudnnSetConvolutionMathType(plan->conv, c.fp16 ? dnn::kMathTensorOp : dnn::kMathFma),
          "SetConvolutionMathType");
    dnn::FwdAlgoPerf perf[dnn::kFwdAlgoCount] = {};
    int found = 0;
    const dnn::Status st = L.cudnnGetConvolutionForwardAlgorithm_v7(static_cast<dnn::Handle>(handle_), plan->x, plan->w,
                                                                    plan->conv, plan->y, dnn::kFwdAlgoCount, &found, perf);
    // The heuristic lists algorithms best first; take the first that works within our workspace cap
    // (in fp32 mode, also one that keeps FMA math rather than a tensor-op/TF32 variant).
    for (int i = 0; st == dnn::kStatusSuccess && i < found && !plan->ok; ++i) {
      if (perf[i].status != dnn::kStatusSuccess || perf[i].memory > kMaxWorkspaceBytes) continue;
      if (!c.fp16 && perf[i].mathType != dnn::kMathFma) continue;
      plan->algo = perf[i].algo;
      plan->workspace = perf[i].memory;
      plan->ok = true;
    }
    it = plans_.emplace(key, std::move(plan)).first;
  }
  *workspace_bytes = it->second->workspace;
  return it->second->ok;
}

std::string Cudnn::run(const DnnConv& c, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const DnnLib& L = dnn_lib();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(key_of(c));
  L2D_ASSERT(it != plans_.end() && it->second->ok && workspace_bytes >= it->second->workspace);
  Plan& plan = *it->second;
  const auto h = static_cast<dnn::Handle>(handle_);
  const float one = 1.f, zero = 0.f;  // scaling factors are float for half and float tensors
  const char* what = "SetStream";
  dnn::Status st = L.cudnnSetStream(h, stream);
  if (st == dnn::kStatusSuccess) {
    what = "ConvolutionForward";
    st = L.cudnnConvolutionForward(h, &one, plan.x, c.x, plan.w, c.w, plan.conv, plan.algo, workspace, workspace_bytes,
                                   &zero, plan.y, c.y);
  }
  if (st == dnn::kStatusSuccess && c.bias) {
    what = "AddTensor (bias)";
    st = L.cudnnAddTensor(h, &one, plan.bias, c.bias, &one, plan.y, c.y);
  }
  if (st == dnn::kStatusSuccess && c.residual) {  // after the bias: conv2d then Adds, in that order
    what = "AddTensor (residual)";
    st = L.cudnnAddTensor(h, &one, plan.y, c.residual, &one, plan.y, c.y);
  }
  if (st == dnn::kStatusSuccess) return "";
  plan.ok = false;
  return std::string("cuDNN ") + what + ": " + L.cudnnGetErrorString(st) + " (" + std::to_string(st) + ")";
}

}  // namespace l2d::vendor
