// CUDA graphs of the per-frame region (Backend::capture / replay / release_capture). The stream
// captures the step once per geometry after one eager frame (autotuning, lazy tables) and then
// launches it with one cudaGraphLaunch per frame. Memory: see CapturedGraph (graph.h) and
// raw_alloc / raw_free (backend_cuda.cu), which route the capturing thread's blocks to the graph.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend_cuda.h"
#include "common.cuh"

namespace l2d::cuda {

bool graphs_from_env() {
  const char* env = std::getenv("L2D_CUDA_GRAPHS");
  if (!env || !*env || std::strcmp(env, "1") == 0) return true;
  if (std::strcmp(env, "0") == 0) return false;
  fail(L2D_ERR_INVALID_ARGUMENT, "L2D_CUDA_GRAPHS must be 0 or 1, got \"", env, "\"");
}

namespace {

std::string cuda_failure(const char* call, cudaError_t e) {
  return std::string(call) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

// Kernel nodes and memcpy/memset nodes of a captured graph (vendor libraries may add several
// kernels per call); 0 and 0 if unknown.
struct NodeCounts {
  uint64_t kernels = 0, copies = 0;
};
NodeCounts count_nodes(cudaGraph_t graph) {
  NodeCounts c;
  size_t n = 0;
  if (cudaGraphGetNodes(graph, nullptr, &n) != cudaSuccess || n == 0) return c;
  std::vector<cudaGraphNode_t> nodes(n);
  if (cudaGraphGetNodes(graph, nodes.data(), &n) != cudaSuccess) return c;
  for (size_t i = 0; i < n; ++i) {
    cudaGraphNodeType type;
    if (cudaGraphNodeGetType(nodes[i], &type) != cudaSuccess) continue;
    if (type == cudaGraphNodeTypeKernel) ++c.kernels;
    if (type == cudaGraphNodeTypeMemcpy || type == cudaGraphNodeTypeMemset) ++c.copies;
  }
  return c;
}

}  // namespace

int64_t CudaBackend::capture(const std::function<void()>& region, std::string* why) {
  if (why) why->clear();
  // Off, or L2D_CUDA_SYNC=1 (whose point is a sync after every op): eager.
  if (!use_graphs_ || sync_each_op_) {
    region();
    return 0;
  }
  auto g = std::make_unique<CapturedGraph>();
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    L2D_ASSERT(!capturing_);  // Guarded<>::capture makes captures exclusive
    capturing_ = g.get();
    capture_thread_ = std::this_thread::get_id();
  }
  std::string failure;
  // Thread-local mode: a call on this thread that cannot be part of a graph (a stream sync, a
  // pageable copy, cudaMalloc outside raw_alloc's exception) invalidates the capture, so it fails
  // loudly here instead of giving a graph that silently skips work on replay (Relaxed would allow
  // such calls). Other threads (other contexts, other devices) are not restricted, as they would
  // be in Global mode; other sessions of this context wait in Guarded<>::capture.
  cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    failure = cuda_failure("cudaStreamBeginCapture", e);
  } else {
    try {
      CaptureTallyScope tally;  // launches recorded into the graph, not run (the bench's counters)
      region();
    } catch (const std::exception& ex) {
      failure = ex.what();
    }
    cudaGraph_t graph = nullptr;
    e = cudaStreamEndCapture(stream_, &graph);
    if (failure.empty() && e != cudaSuccess) failure = cuda_failure("cudaStreamEndCapture", e);
    if (failure.empty()) {
      e = cudaGraphInstantiate(&g->exec, graph, 0);
      if (e != cudaSuccess) failure = cuda_failure("cudaGraphInstantiate", e);
    }
    if (failure.empty()) {
      const NodeCounts nodes = count_nodes(graph);
      g->kernel_nodes = nodes.kernels;
      g->copy_nodes = nodes.copies;
    }
    if (graph) cudaGraphDestroy(graph);
  }
  cudaGetLastError();  // capture errors are not sticky; leave no stale error for later checks
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    capturing_ = nullptr;
  }
  if (!failure.empty()) {
    // Nothing ran while capturing: give the blocks back and run the region eagerly, so this
    // frame is still produced (a real fault throws again here, from the op that makes it).
    discard_graph(std::move(g));
    if (why) *why = failure;
    region();
    return 0;
  }
  const cudaGraphExec_t exec = g->exec;
  const uint64_t kernel_nodes = g->kernel_nodes, copy_nodes = g->copy_nodes;
  int64_t handle = 0;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    handle = next_graph_++;
    graphs_.emplace(handle, std::move(g));
  }
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));  // the frame being captured
  tally_graph_launch(kernel_nodes, copy_nodes);
  return handle;
}

void CudaBackend::replay(int64_t handle) {
  cudaGraphExec_t exec = nullptr;
  uint64_t kernel_nodes = 0, copy_nodes = 0;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    auto it = graphs_.find(handle);
    if (it == graphs_.end()) fail(L2D_ERR_INTERNAL, "replay(", handle, "): no such graph");
    exec = it->second->exec;
    kernel_nodes = it->second->kernel_nodes;
    copy_nodes = it->second->copy_nodes;
  }
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  tally_graph_launch(kernel_nodes, copy_nodes);
}

void CudaBackend::release_capture(int64_t handle) noexcept {
  std::unique_ptr<CapturedGraph> g;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    auto it = graphs_.find(handle);
    if (it == graphs_.end()) return;
    g = std::move(it->second);
    graphs_.erase(it);
  }
  discard_graph(std::move(g));
}

void CudaBackend::discard_graph(std::unique_ptr<CapturedGraph> g) noexcept {
  // A launch of it may still be running: its blocks must not be handed out before it ends.
  // (Released rarely: a new frame size, a prompt of another length, the stream's end.)
  cudaStreamSynchronize(stream_);
  if (g->exec) cudaGraphExecDestroy(g->exec);
  cudaGetLastError();
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    for (const auto& [size, ptr] : g->free) {  // idle: back to the pool
      free_blocks_.emplace(size, ptr);
      graph_idle_ -= size;
    }
    for (const auto& [ptr, size] : g->blocks) graph_blocks_.erase(ptr);  // live ones return via raw_free
  }
  g->keep.clear();  // outside the lock: freeing them takes it
}

void CudaBackend::keep_for_capture(const std::vector<Tensor>& tensors) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (CapturedGraph* graph = capture_here()) graph->keep.insert(graph->keep.end(), tensors.begin(), tensors.end());
}

}  // namespace l2d::cuda
