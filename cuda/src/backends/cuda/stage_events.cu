// Stage profiling of the CUDA backend with events (see stage_events.h).
#include "backend_cuda.h"
#include "stage_events.h"

namespace l2d::cuda {
namespace {
constexpr size_t kMaxPending = 512;  // beyond this, end() waits for the oldest pair (bounded memory)
}  // namespace

StageEvents::~StageEvents() {
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (auto& [token, e] : open_) cudaEventDestroy(e);
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t StageEvents::take() noexcept {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  return cudaEventCreate(&e) == cudaSuccess ? e : nullptr;
}

uint64_t StageEvents::begin(cudaStream_t stream) noexcept {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone) return 0;
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaEvent_t e = take();
    if (!e) return 0;
    if (cudaEventRecord(e, stream) != cudaSuccess) {
      free_.push_back(e);
      return 0;
    }
    open_.emplace(++next_token_, e);
    return next_token_;
  } catch (...) {
    return 0;  // host memory: no sample
  }
}

void StageEvents::finish(const Pending& p, StageTimes& times) noexcept {
  float ms = 0.f;
  if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
    try {
      times.add(p.stage, double(ms));
    } catch (...) {
    }
  }
  try {
    free_.push_back(p.start);
    free_.push_back(p.stop);
  } catch (...) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
}

void StageEvents::end(const char* stage, uint64_t token, cudaStream_t stream, StageTimes& times) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = open_.find(token);
    if (it == open_.end()) return;
    const cudaEvent_t start = it->second;
    open_.erase(it);
    // Another session of the context may have begun capturing since begin(): an event recorded
    // now would belong to its graph and could never be timed. The sample is dropped.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const bool capturing =
        cudaStreamIsCapturing(stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone;
    cudaEvent_t stop = capturing ? nullptr : take();
    if (!stop || cudaEventRecord(stop, stream) != cudaSuccess) {
      free_.push_back(start);
      if (stop) free_.push_back(stop);
      return;
    }
    pending_.push_back({stage, start, stop});
    // A long backlog waits for its oldest pair (completed long ago by then); collect() folds in the
    // rest. No cudaEventQuery polling: its "not ready" result is an error code, and none may be
    // left for a later launch check (cudaGetLastError) to report as a failure.
    while (pending_.size() > kMaxPending) {
      cudaEventSynchronize(pending_.front().stop);
      finish(pending_.front(), times);
      pending_.pop_front();
    }
  } catch (...) {
    // host memory: the sample is dropped
  }
}

void StageEvents::collect(StageTimes& times) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  while (!pending_.empty()) {
    cudaEventSynchronize(pending_.front().stop);
    finish(pending_.front(), times);
    pending_.pop_front();
  }
}

// ---- CudaBackend's Backend overrides ----

void CudaBackend::set_stage_profiling(bool on) {
  const DeviceGuard g(device_api(), device_);
  if (on && !stage_events_) stage_events_ = std::make_unique<StageEvents>();
  stage_profiling_ = on;
}

uint64_t CudaBackend::stage_begin() noexcept {
  if (!stage_profiling_.load(std::memory_order_relaxed) || !stage_events_) return 0;
  return stage_events_->begin(stream_);
}

void CudaBackend::stage_end(const char* stage, uint64_t token) noexcept {
  if (token != 0 && stage_events_) stage_events_->end(stage, token, stream_, stage_times_);
}

std::string CudaBackend::stage_times_json() {
  if (stage_events_) {
    const DeviceGuard g(device_api(), device_);
    stage_events_->collect(stage_times_);
  }
  return stage_times_.json();
}

}  // namespace l2d::cuda
