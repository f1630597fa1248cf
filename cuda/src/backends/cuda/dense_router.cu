// Path choice, vendor fallbacks, counters and optional event timing for the dense ops.
#include "dense_router.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "backend_cuda.h"
#include "common.cuh"
#include "kernels/elementwise.cuh"
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
    case DenseRouter::Mode::Tune: return "tune";
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
    else if (v == "tune") mode_ = Mode::Tune;
    else fail(L2D_ERR_INVALID_ARGUMENT, "L2D_KERNELS must be auto, simple, own, vendor or tune, got \"", v, "\"");
  }
  if (const char* env = std::getenv("L2D_PROFILE_DENSE")) profile_ = std::strcmp(env, "1") == 0;
  // fp32 "auto" never uses the vendor path, so the libraries are only opened where they may run.
  if (vendor_allowed()) {
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
  // No timing events while the stream is being captured: an event recorded into a graph can be
  // neither waited on nor timed later (cudaErrorCapturedEvent), which would break the stats.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (!profile_ || cudaStreamIsCapturing(s, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone) {
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

namespace {

// The shape of a GEMM as a tuning key (everything the kernels' speed depends on).
std::string shape_key(const GemmParams& g, bool vendor_form) {
  std::ostringstream k;
  k << g.M << ',' << g.N << ',' << g.K << ',' << g.batch << ',' << g.b_mode << ',' << g.bias_mode << ',' << g.lda
    << ',' << g.ldb << ',' << (g.a_bs != 0) << (g.b_bs != 0) << (g.residual ? 'r' : '-') << (vendor_form ? 'v' : '-')
    << (g.bias_bs ? 'i' : '-');
  if (g.b_mode == kGemmB_Im2col)
    k << ',' << g.conv_C << 'x' << g.conv_H << 'x' << g.conv_W << ',' << g.conv_KH << 'x' << g.conv_KW << ",s"
      << g.conv_sh << ",p" << g.conv_pt << '.' << g.conv_pl;
  return k.str();
}

}  // namespace

bool DenseRouter::vendor_allowed() const {
  return mode_ == Mode::Vendor || mode_ == Mode::Tune || (mode_ == Mode::Auto && fp16_);
}

void DenseRouter::route(CudaBackend& be, const std::string& cls, const std::string& key, double flops,
                        std::vector<Candidate>& cands) {
  if (mode_ == Mode::Tune) {
    auto it = tuned_.find(key);
    if (it == tuned_.end()) {
      tune(be, cls, key, flops, cands);
      return;
    }
    // The measured winner first; the rest stay as fallbacks.
    std::stable_partition(cands.begin(), cands.end(), [&](const Candidate& c) { return c.path == it->second; });
  }
  for (Candidate& c : cands) {
    bool ok = false;
    record(be.stream(), cls, c.path, flops, [&] { ok = c.run(); });
    if (ok) return;
  }
  fail(L2D_ERR_INTERNAL, "no kernel path could run ", cls);  // unreachable: simple always runs
}

// Runs every candidate once untimed and twice between CUDA events (synchronising: only on a shape's
// first call), keeps the fastest for the key, and runs it once more so that its output is the one left.
void DenseRouter::tune(CudaBackend& be, const std::string& cls, const std::string& key, double flops,
                       std::vector<Candidate>& cands) {
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  KernelPath best = KernelPath::Simple;
  float best_ms = 1e30f;
  std::string report;
  for (Candidate& c : cands) {
    if (!c.run()) continue;  // declined or failed: not a candidate for this shape
    float ms = 1e30f;
    for (int rep = 0; rep < 2; ++rep) {
      CUDA_CHECK(cudaEventRecord(start, be.stream()));
      c.run();
      CUDA_CHECK(cudaEventRecord(stop, be.stream()));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0.f;
      CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      ms = std::min(ms, t);
    }
    report += std::string(report.empty() ? "" : " ") + kernel_path_name(c.path) + "=" + std::to_string(ms);
    if (ms < best_ms) {
      best_ms = ms;
      best = c.path;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  tuned_[key] = best;
  tune_log_[cls + " " + key] = report;
  std::stable_partition(cands.begin(), cands.end(), [&](const Candidate& c) { return c.path == best; });
  for (Candidate& c : cands) {
    bool ok = false;
    record(be.stream(), cls, c.path, flops, [&] { ok = c.run(); });
    if (ok) return;
  }
  fail(L2D_ERR_INTERNAL, "no kernel path could run ", cls);
}

void DenseRouter::conv2d(CudaBackend& be, const GemmParams& g, const vendor::DnnConv* dnn, const std::string& cls) {
  std::vector<Candidate> cands;
  size_t ws_bytes = 0;
  if (dnn && dnn_ && vendor_allowed() && dnn_->prepare(*dnn, &ws_bytes)) {
    cands.push_back({KernelPath::Vendor, [&, ws_bytes] {
                       Buffer ws(&be, ws_bytes);
                       // The bench's launches per frame: the convolution and its AddTensor passes.
                       thread_device_tally().vendor_calls += 1 + dnn->extra_calls();
                       const std::string err = dnn_->run(*dnn, ws_bytes ? ws.data() : nullptr, ws_bytes, be.stream());
                       if (!err.empty()) note_vendor_error(err);  // our kernels then overwrite the whole output
                       return err.empty();
                     }});
  }
  if (mode_ != Mode::Simple && own_ok(g)) cands.push_back({KernelPath::Own, [&] { return run_own(be, g), true; }});
  cands.push_back({KernelPath::Simple, [&] { return gemm_cuda(g, fp16_, be.stream()), true; }});
  route(be, cls, mode_ == Mode::Tune ? shape_key(g, dnn != nullptr) : std::string(), gemm_flops(g), cands);
}

void DenseRouter::gemm(CudaBackend& be, const GemmParams& g, const vendor::LtGemm* lt, const std::string& cls) {
  std::vector<Candidate> cands;
  size_t ws_bytes = 0;
  if (lt && lt_ && vendor_allowed() && lt_->prepare(*lt, &ws_bytes)) {
    cands.push_back({KernelPath::Vendor, [&, ws_bytes] {
                       Buffer ws(&be, ws_bytes);
                       ++thread_device_tally().vendor_calls;  // the bench's launches per frame
                       const std::string err = lt_->run(*lt, ws_bytes ? ws.data() : nullptr, ws_bytes, be.stream());
                       if (!err.empty()) note_vendor_error(err);
                       return err.empty();
                     }});
  }
  if (mode_ != Mode::Simple && own_ok(g)) cands.push_back({KernelPath::Own, [&] { return run_own(be, g), true; }});
  cands.push_back({KernelPath::Simple, [&] { return gemm_cuda(g, fp16_, be.stream()), true; }});
  route(be, cls, mode_ == Mode::Tune ? shape_key(g, lt != nullptr) : std::string(), gemm_flops(g), cands);
}

void DenseRouter::linear_geglu(CudaBackend& be, const GemmParams& fused, const GemmParams& lin,
                               const vendor::LtGemm* lt, const std::string& cls) {
  L2D_ASSERT(fused.epilogue == kEpiGeglu && fused.N == 2 * fused.geglu_c && lin.epilogue == kEpiDense);
  const int64_t M = fused.M, C = fused.geglu_c;
  // The unfused forms: the linear into a stream-ordered [M, 2C] scratch, then the geglu kernel into y.
  const size_t scratch_bytes = size_t(M) * size_t(2 * C) * (fp16_ ? 2 : 4);
  auto unfused = [&, scratch_bytes](auto&& gemm_into) {
    Buffer h(&be, scratch_bytes);
    if (!gemm_into(h.data())) return false;
    geglu_cuda(h.data(), fused.C, M, C, fp16_, be.stream());
    return true;
  };
  std::vector<Candidate> cands;
  size_t ws_bytes = 0;
  if (lt && lt_ && vendor_allowed() && lt_->prepare(*lt, &ws_bytes)) {
    cands.push_back({KernelPath::Vendor, [&, ws_bytes] {
                       return unfused([&](void* h) {
                         vendor::LtGemm g = *lt;
                         g.C = h;
                         Buffer ws(&be, ws_bytes);
                         ++thread_device_tally().vendor_calls;
                         const std::string err = lt_->run(g, ws_bytes ? ws.data() : nullptr, ws_bytes, be.stream());
                         if (!err.empty()) note_vendor_error(err);  // the next candidate rewrites y
                         return err.empty();
                       });
                     }});
  }
  if (mode_ != Mode::Simple && own_ok(fused))
    cands.push_back({KernelPath::Own, [&] { return run_own(be, fused), true; }});  // the fused GEMM
  cands.push_back({KernelPath::Simple, [&] {
                     return unfused([&](void* h) {
                       GemmParams g = lin;
                       g.C = h;
                       gemm_cuda(g, fp16_, be.stream());
                       return true;
                     });
                   }});
  route(be, cls, mode_ == Mode::Tune ? shape_key(lin, lt != nullptr) + ",geglu" : std::string(),
        gemm_flops(fused), cands);
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
    << ",\"profiling\":" << (profile_ ? "true" : "false");
  if (mode_ == Mode::Tune) {  // shape -> the candidates' ms and the winner
    o << ",\"tuned\":{";
    bool tfirst = true;
    for (const auto& [k, report] : tune_log_) {
      o << (tfirst ? "" : ",") << json_str(k) << ":" << json_str(report);
      tfirst = false;
    }
    o << "}";
  }
  o
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
