// device_tally.h: per-thread tallies of the work a native call hands to a device (kernel launches,
// vendor library calls, CUDA-graph launches, memory copies) and of the time it spends blocked waiting for it.
// Backends bump them where the work is issued (CUDA_CHECK_LAUNCH after every <<<>>>, the dense
// router's vendor calls, the stream waits, the CPU pool's loops); api.cpp reads them before and after
// each call and adds the difference to the call's context, so every context gets its own counts
// without the kernels knowing which context they run for (a call runs on one thread, for one context).
// Host C++ only (no CUDA headers): api.cpp and the CPU backend include it too.
#pragma once

#include <chrono>
#include <cstdint>

namespace l2d {

struct DeviceTally {
  uint64_t kernels = 0;           // kernel launches issued eagerly (one per <<<>>>)
  uint64_t vendor_calls = 0;      // cuBLASLt / cuDNN calls (each launches one or more kernels)
  uint64_t graphs = 0;            // CUDA-graph launches (cudaGraphLaunch)
  uint64_t graph_kernels = 0;     // kernel nodes inside the graphs launched
  uint64_t captured_kernels = 0;  // launches recorded into a graph while capturing (not run then)
  uint64_t syncs = 0;             // host waits for the device (stream / event synchronisations timed below)
  uint64_t device_wait_ns = 0;    // host time blocked in them
  uint64_t cpu_loops = 0;         // CPU backend: top-level thread-pool loops (its stand-in for a launch)
  // Memory copies and fills, counted apart from the launches ("1 graph launch + the copies" per
  // frame): CUDA cudaMemcpy*/cudaMemset* calls issued eagerly (CUDA_COPY); on the CPU the copies
  // between the caller's memory and the backend's (from_host, to_host, upload_bytes,
  // download_bytes, image_from_u8, image_to_host), which are the transfers on a GPU.
  uint64_t copies = 0;
  uint64_t graph_copies = 0;     // memcpy / memset nodes inside the graphs launched
  uint64_t captured_copies = 0;  // copies recorded into a graph while capturing (not run then)
};


inline DeviceTally& thread_device_tally() {
  thread_local DeviceTally tally;
  return tally;
}

// One copy or fill issued (see DeviceTally::copies).
inline void tally_copy() { ++thread_device_tally().copies; }

// After cudaGraphLaunch (graph.cu): one graph with `kernel_nodes` kernels and `copy_nodes`
// memcpy/memset nodes in it launched.
inline void tally_graph_launch(uint64_t kernel_nodes, uint64_t copy_nodes = 0) {
  DeviceTally& t = thread_device_tally();
  ++t.graphs;
  t.graph_kernels += kernel_nodes;
  t.graph_copies += copy_nodes;
}

// Around a graph capture: the launches and copies made inside the scope were recorded, not run,
// so they move from `kernels`/`vendor_calls` to `captured_kernels` and from `copies` to
// `captured_copies` when the scope ends.
class CaptureTallyScope {
 public:
  CaptureTallyScope()
      : kernels_(thread_device_tally().kernels),
        vendor_(thread_device_tally().vendor_calls),
        copies_(thread_device_tally().copies) {}
  ~CaptureTallyScope() {
    DeviceTally& t = thread_device_tally();
    t.captured_kernels += (t.kernels - kernels_) + (t.vendor_calls - vendor_);
    t.captured_copies += t.copies - copies_;
    t.kernels = kernels_;
    t.vendor_calls = vendor_;
    t.copies = copies_;
  }
  CaptureTallyScope(const CaptureTallyScope&) = delete;
  CaptureTallyScope& operator=(const CaptureTallyScope&) = delete;

 private:
  uint64_t kernels_, vendor_, copies_;
};

// Runs `wait` (a synchronising call), counts it and adds the time it blocked to device_wait_ns;
// returns its result.
template <class F>
auto timed_device_wait(F&& wait) -> decltype(wait()) {
  const auto t0 = std::chrono::steady_clock::now();
  struct Add {
    std::chrono::steady_clock::time_point t0;
    ~Add() {
      thread_device_tally().device_wait_ns +=
          uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    }
  } add{t0};
  ++thread_device_tally().syncs;
  return wait();
}

}  // namespace l2d
