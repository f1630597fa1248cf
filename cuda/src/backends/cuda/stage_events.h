// stage_events.h: the CUDA backend's stage profiling (Backend::stage_begin / stage_end): an event
// recorded on the backend's stream at each end of a stage, the elapsed time between the two added
// to the context's StageTimes by collect() (l2d_context_stats), which waits for them; a backlog of
// more than 512 pairs waits for its oldest at the next stage end (bounded memory). Off by default; no events while the stream is being captured
// into a CUDA graph. With several streams on one context their stages interleave on the one CUDA
// stream, so a stage's time then includes other streams' work: profile one stream at a time.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../../core/stage_profile.h"

namespace l2d::cuda {

class StageEvents {
 public:
  ~StageEvents();
  // A token for end() (0: nothing recorded: capturing, or an event could not be made).
  uint64_t begin(cudaStream_t stream) noexcept;
  void end(const char* stage, uint64_t token, cudaStream_t stream, StageTimes& times) noexcept;
  // Waits for every recorded pair and adds it to `times`.
  void collect(StageTimes& times) noexcept;

 private:
  struct Pending {
    std::string stage;
    cudaEvent_t start, stop;
  };
  cudaEvent_t take() noexcept;  // from the free list or a new one (nullptr on failure)
  void finish(const Pending& p, StageTimes& times) noexcept;  // elapsed -> times; events back to the list

  std::mutex mutex_;  // streams of one context may push from several threads
  std::vector<cudaEvent_t> free_;
  std::map<uint64_t, cudaEvent_t> open_;  // token -> start event
  std::deque<Pending> pending_;           // recorded, maybe not complete yet (oldest first)
  uint64_t next_token_ = 0;
};

}  // namespace l2d::cuda
