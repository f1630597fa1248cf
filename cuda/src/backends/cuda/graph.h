// graph.h: what the CUDA backend keeps for the per-frame path (issue 15): captured regions
// (CUDA graphs, graph.cu) with the pool blocks they own, and the pinned staging buffers the
// frame goes up and the output comes down through (graph_io.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "../../core/tensor.h"

namespace l2d::cuda {

// One captured region. A graph replays the addresses it was captured with, so every pool block
// the region allocated, or freed (a block freed inside the region may still be read by an earlier
// node on replay), belongs to the graph until release_capture(): blocks freed during the capture
// are reused only within it and never handed to anything else while the graph exists.
struct CapturedGraph {
  cudaGraphExec_t exec = nullptr;
  uint64_t kernel_nodes = 0;  // kernels in the graph (the bench's launch counters)
  uint64_t copy_nodes = 0;    // memcpy / memset nodes in it (its "copies")
  std::vector<std::pair<void*, size_t>> blocks;  // every block it owns (pointer, bucket size)
  std::multimap<size_t, void*> free;             // owned blocks no tensor holds now
  std::vector<Tensor> keep;  // tensors made before the capture that it reads (frame-fit tables)
};

// Pinned host memory for one direction of the per-frame copy, grown only when a frame is larger
// than any before. `done` is recorded after the last copy through it: the host may rewrite the
// buffer only after that event (one thread at a time: `mutex`).
struct PinnedStaging {
  std::mutex mutex;
  uint8_t* host = nullptr;
  size_t capacity = 0;
  cudaEvent_t done = nullptr;
};

// L2D_CUDA_GRAPHS: unset or 1 captures the per-frame region, 0 keeps eager launches; anything
// else is L2D_ERR_INVALID_ARGUMENT. Read once per context.
bool graphs_from_env();

}  // namespace l2d::cuda
