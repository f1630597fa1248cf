// Path choice, vendor fallbacks, counters and optional event timing for the dense ops.
#include "dense_router.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "backend_cuda.h"
#include "common.cuh"
#include "kernels/gemm_tc.cuh"

namespace l2d::cuda {

const char* kernel_path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Simple: return "simple";
    case KernelPath::Own: return "own";
    case KernelPath::Vendor: return "vendor";
  }
  return "?";
}

namespace {

const char* mode_name(DenseRouter::Mode m) {
  switch (m) {
    case DenseRouter::Mode::Auto: return "auto";
    case DenseRouter::Mode::Simple: return "simple";
    case DenseRouter::Mode::Own: return "own";
    case DenseRouter::Mode::Vendor: return "vendor";
  }
  return "?";
}

std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    out += c;
  }
  return out + "\"";
}

double gemm_flops(const GemmParams& g) { return 2.0 * double(g.M) * double(g.N) * double(g.K) * double(g.batch); }

}  // namespace

DenseRouter::DenseRouter(bool fp16) : fp16_(fp16) {
  if (const char* env = std::getenv("L2D_KERNELS"); env && *env) {
    const std::string v = env;
    if (v == "auto") mode_ = Mode::Auto;
    else if (v == "simple") mode_ = Mode::Simple;
    else if (v == "own") mode_ = Mode::Own;
    else if (v == "vendor") mode_ = Mode::Vendor;
    else fail(L2D_ERR_INVALID_ARGUMENT, "L2D_KERNELS must be auto, simple, own or vendor, got \"", v, "\"");
  }
  if (const char* env = std::getenv("L2D_PROFILE_DENSE")) profile_ = std::strcmp(env, "1") == 0;
  // fp32 "auto" never uses the vendor path, so the libraries are only opened where they may run.
  const bool want_vendor = mode_ == Mode::Vendor || (mode_ == Mode::Auto && fp16_);
  if (want_vendor) {
    lt_ = vendor::CublasLt::open(lt_why_);
    dnn_ = vendor::Cudnn::open(dnn_why_);
  } else {
    lt_why_ = dnn_why_ = std::string("not opened (L2D_KERNELS=") + mode_name(mode_) + (fp16_ ? ")" : ", fp32)");
  }
}

DenseRouter::~DenseRouter() {
  for (Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
}

template <typename Fn>
void DenseRouter::record(cudaStream_t s, const std::string& cls, KernelPath path, double flops, Fn&& fn) {
  Counter& c = counters_[cls][int(path)];
  ++c.calls;
  c.flops += flops;
  if (!profile_) {
    fn();
    return;
  }
  Pending p{nullptr, nullptr, cls, path};
  CUDA_CHECK(cudaEventCreate(&p.start));
  CUDA_CHECK(cudaEventCreate(&p.stop));
  CUDA_CHECK(cudaEventRecord(p.start, s));
  fn();
  CUDA_CHECK(cudaEventRecord(p.stop, s));
  pending_.push_back(p);
  if (pending_.size() >= 4096) fold_events();
}

void DenseRouter::fold_events() {
  for (Pending& p : pending_) {
    float ms = 0.f;
    CUDA_CHECK(cudaEventSynchronize(p.stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.stop));
    counters_[p.cls][int(p.path)].ms += ms;
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  pending_.clear();
}

void DenseRouter::note_vendor_error(const std::string& err) {
  ++vendor_errors_;
  last_vendor_error_ = err;
}

bool DenseRouter::own_ok(const GemmParams& g) const { return fp16_ && gemm_tc_supported(g); }

void DenseRouter::run_own(CudaBackend& be, const GemmParams& g) {
  const TcPlan plan = gemm_tc_plan(g);
  if (plan.workspace_floats > 0) {
    // Stream-ordered pool memory: returned when this scope ends, reused only by later work on the stream.
    Buffer ws(&be, size_t(plan.workspace_floats) * sizeof(float));
    gemm_tc_cuda(g, plan, static_cast<float*>(ws.data()), be.stream());
  } else {
    gemm_tc_cuda(g, plan, nullptr, be.stream());
  }
}

void DenseRouter::conv2d(CudaBackend& be, const GemmParams& g, const vendor::DnnConv* dnn, const std::string& cls) {
  const double flops = gemm_flops(g);
  if (dnn && dnn_ && (mode_ == Mode::Vendor || (mode_ == Mode::Auto && fp16_))) {
    size_t ws_bytes = 0;
    if (dnn_->prepare(*dnn, &ws_bytes)) {
      std::string err;
      record(be.stream(), cls, KernelPath::Vendor, flops, [&] {
        Buffer ws(&be, ws_bytes);
        err = dnn_->run(*dnn, ws_bytes ? ws.data() : nullptr, ws_bytes, be.stream());
      });
      if (err.empty()) return;
      note_vendor_error(err);  // recomputed below: our kernels overwrite the whole output
    }
  }
  if (mode_ != Mode::Simple && own_ok(g)) {
    record(be.stream(), cls, KernelPath::Own, flops, [&] { run_own(be, g); });
    return;
  }
  record(be.stream(), cls, KernelPath::Simple, flops, [&] { gemm_cuda(g, fp16_, be.stream()); });
}

void DenseRouter::gemm(CudaBackend& be, const GemmParams& g, const vendor::LtGemm* lt, const std::string& cls) {
  const double flops = gemm_flops(g);
  if (lt && lt_ && (mode_ == Mode::Vendor || (mode_ == Mode::Auto && fp16_))) {
    size_t ws_bytes = 0;
    if (lt_->prepare(*lt, &ws_bytes)) {
      std::string err;
      record(be.stream(), cls, KernelPath::Vendor, flops, [&] {
        Buffer ws(&be, ws_bytes);
        err = lt_->run(*lt, ws_bytes ? ws.data() : nullptr, ws_bytes, be.stream());
      });
      if (err.empty()) return;
      note_vendor_error(err);
    }
  }
  if (mode_ != Mode::Simple && own_ok(g)) {
    record(be.stream(), cls, KernelPath::Own, flops, [&] { run_own(be, g); });
    return;
  }
  record(be.stream(), cls, KernelPath::Simple, flops, [&] { gemm_cuda(g, fp16_, be.stream()); });
}

void DenseRouter::simple_only(CudaBackend& be, const GemmParams& g, const std::string& cls) {
  record(be.stream(), cls, KernelPath::Simple, gemm_flops(g), [&] { gemm_cuda(g, fp16_, be.stream()); });
}

std::string DenseRouter::info_json() {
  if (profile_) fold_events();
  std::ostringstream o;
  o << "{\"mode\":\"" << mode_name(mode_) << "\",\"precision\":\"" << (fp16_ ? "fp16" : "fp32") << "\""
    << ",\"default\":\"fp16: vendor when loaded, else own where supported, else simple; fp32: simple\""
    << ",\"cublasLt\":" << (lt_ ? json_str(lt_->description()) : "null")
    << ",\"cublasLt_why\":" << (lt_ ? "null" : json_str(lt_why_))
    << ",\"cudnn\":" << (dnn_ ? json_str(dnn_->description()) : "null")
    << ",\"cudnn_why\":" << (dnn_ ? "null" : json_str(dnn_why_)) << ",\"vendor_errors\":" << vendor_errors_
    << ",\"last_vendor_error\":" << (vendor_errors_ ? json_str(last_vendor_error_) : "null")
    << ",\"profiling\":" << (profile_ ? "true" : "false")
    << ",\"ops\":{";
  bool first = true;
  for (const auto& [cls, paths] : counters_) {
    o << (first ? "" : ",") << json_str(cls) << ":{";
    first = false;
    bool pfirst = true;
    for (int p = 0; p < 3; ++p) {
      const Counter& c = paths[p];
      if (!c.calls) continue;
      o << (pfirst ? "" : ",") << "\"" << kernel_path_name(KernelPath(p)) << "\":{\"calls\":" << c.calls
        << ",\"gflop\":" << c.flops * 1e-9;
      if (profile_) o << ",\"ms\":" << c.ms;
      o << "}";
      pfirst = false;
    }
    o << "}";
  }
  o << "}}";
  return o.str();
}

}  // namespace l2d::cuda
