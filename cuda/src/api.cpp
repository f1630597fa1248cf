// api.cpp: the C ABI shims. Each function checks its arguments, calls into the core inside a
// try/catch, and turns exceptions into an l2d_status plus the per-thread last-error message.
// No math lives here.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <new>
#include <string>

#include "backends/backends.h"
#include "core/device_tally.h"
#include "core/error.h"
#include "core/philox_fill.h"
#include "l2d.h"
#include "models/model.h"
#include "pipeline/stream.h"

struct l2d_tmap {
  l2d::TensorMap map;
};

namespace {
// What the calls on a context handed to its device (sums of the calling threads' DeviceTally
// differences, see attributed()) and what its stream pushes cost; l2d_context_stats reports them.
struct ContextCounters {
  std::atomic<uint64_t> kernels{0}, vendor_calls{0}, graphs{0}, graph_kernels{0}, captured_kernels{0}, syncs{0},
      device_wait_ns{0}, cpu_loops{0};
  std::atomic<uint64_t> copies{0}, graph_copies{0}, captured_copies{0};
  std::atomic<uint64_t> pushes{0}, push_wall_ns{0}, push_wait_ns{0}, push_cpu_ns{0};
};
struct ContextImpl {
  std::unique_ptr<l2d::Backend> backend;
  ContextCounters counters;
};
struct ModelImpl {
  std::shared_ptr<ContextImpl> ctx;  // keeps the backend alive while the model lives
  std::unique_ptr<l2d::Model> impl;
};
}  // namespace

// Handles hold shared_ptrs so a model may outlive its freed context handle and a session its
// freed model handle. Destruction order inside: session state, then weights, then the backend.
struct l2d_context {
  std::shared_ptr<ContextImpl> ptr;
  std::string last_error;
};
struct l2d_model {
  std::shared_ptr<ModelImpl> ptr;
  std::string last_error;
};
struct l2d_session {
  std::string last_error;
  std::vector<std::shared_ptr<ModelImpl>> models;  // every model the session reads
  std::unique_ptr<l2d::Session> impl;
  ~l2d_session() { impl.reset(); }  // state before the model it points into
};

namespace {

thread_local std::string g_last_error;
thread_local std::string g_scratch_json;

template <typename F>
l2d_status guarded(F&& f) {
  try {
    g_last_error.clear();
    f();
    return L2D_OK;
  } catch (const l2d::Error& e) {
    g_last_error = e.what();
    return e.status();
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return L2D_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return L2D_ERR_INTERNAL;
  } catch (...) {
    g_last_error = "internal error: unknown exception";
    return L2D_ERR_INTERNAL;
  }
}

// Records the message of a failed call in a handle too (see l2d.h: errors of worker-thread calls).
template <typename H, typename F>
l2d_status guarded_on(H* handle, F&& f) {
  const l2d_status status = guarded(std::forward<F>(f));
  if (handle) handle->last_error = status == L2D_OK ? std::string() : g_last_error;
  return status;
}

// Runs f and adds what this thread's device tally gained meanwhile to the context's counters (also
// when f throws: the work was issued). Returns the device-wait nanoseconds of the call.
template <typename F>
uint64_t attributed(ContextImpl& ctx, F&& f) {
  const l2d::DeviceTally before = l2d::thread_device_tally();
  struct Add {
    ContextCounters& c;
    const l2d::DeviceTally& before;
    ~Add() {
      const l2d::DeviceTally& now = l2d::thread_device_tally();
      c.kernels += now.kernels - before.kernels;
      c.vendor_calls += now.vendor_calls - before.vendor_calls;
      c.graphs += now.graphs - before.graphs;
      c.graph_kernels += now.graph_kernels - before.graph_kernels;
      c.captured_kernels += now.captured_kernels - before.captured_kernels;
      c.cpu_loops += now.cpu_loops - before.cpu_loops;
      c.copies += now.copies - before.copies;
      c.graph_copies += now.graph_copies - before.graph_copies;
      c.captured_copies += now.captured_copies - before.captured_copies;
      c.syncs += now.syncs - before.syncs;
      c.device_wait_ns += now.device_wait_ns - before.device_wait_ns;
    }
  } add{ctx.counters, before};
  f();
  return l2d::thread_device_tally().device_wait_ns - before.device_wait_ns;
}

uint64_t steady_ns() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// CPU time of the calling thread (0 where the clock does not exist).
uint64_t thread_cpu_ns() {
#ifdef CLOCK_THREAD_CPUTIME_ID
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
#endif
  return 0;
}

std::string ms_str(uint64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6f", double(ns) / 1e6);
  return buf;
}

// The "launches" and "push" members of l2d_context_stats (see l2d.h).
std::string counters_json(const ContextCounters& c) {
  return "\"launches\":{\"kernels\":" + std::to_string(c.kernels.load()) +
         ",\"vendor_calls\":" + std::to_string(c.vendor_calls.load()) + ",\"graphs\":" + std::to_string(c.graphs.load()) +
         ",\"graph_kernels\":" + std::to_string(c.graph_kernels.load()) +
         ",\"captured_kernels\":" + std::to_string(c.captured_kernels.load()) +
         ",\"cpu_loops\":" + std::to_string(c.cpu_loops.load()) + ",\"syncs\":" + std::to_string(c.syncs.load()) +
         ",\"copies\":" + std::to_string(c.copies.load()) + ",\"graph_copies\":" + std::to_string(c.graph_copies.load()) +
         ",\"captured_copies\":" + std::to_string(c.captured_copies.load()) + "},\"device_wait_ms\":" + ms_str(c.device_wait_ns) +
         ",\"push\":{\"calls\":" + std::to_string(c.pushes.load()) + ",\"wall_ms\":" + ms_str(c.push_wall_ns) +
         ",\"device_wait_ms\":" + ms_str(c.push_wait_ns) + ",\"thread_cpu_ms\":" + ms_str(c.push_cpu_ns) + "}";
}

#define REQUIRE_ARG(p) L2D_REQUIRE((p) != nullptr, "argument \"", #p, "\" must not be null")

l2d::Json parse_optional_json(const char* text) {
  if (text == nullptr || *text == '\0') return l2d::Json::parse("{}");
  return l2d::Json::parse(text);
}

l2d::Shape read_shape(int32_t ndim, const int64_t* shape) {
  L2D_REQUIRE(ndim >= 0 && ndim <= L2D_MAX_DIMS, "ndim must be 0..", L2D_MAX_DIMS, ", got ", ndim);
  L2D_REQUIRE(ndim == 0 || shape != nullptr, "shape must not be null");
  l2d::Shape s(shape, shape + ndim);
  for (int64_t d : s) L2D_REQUIRE(d >= 0, "negative dimension in shape ", l2d::shape_str(s));
  l2d::shape_numel(s);  // throws on overflow
  return s;
}

l2d_dtype checked_dtype(int32_t dtype) {
  L2D_REQUIRE(dtype >= L2D_F32 && dtype <= L2D_BOOL, "unknown dtype code ", dtype);
  return l2d_dtype(dtype);
}

}  // namespace

extern "C" {

uint32_t l2d_abi_version(void) { return L2D_ABI_VERSION; }

const char* l2d_status_string(int32_t status) {
  switch (status) {
    case L2D_OK: return "ok";
    case L2D_ERR_INVALID_ARGUMENT: return "invalid argument";
    case L2D_ERR_NOT_FOUND: return "not found";
    case L2D_ERR_FORMAT: return "format error";
    case L2D_ERR_UNSUPPORTED: return "unsupported";
    case L2D_ERR_OUT_OF_MEMORY: return "out of memory";
    case L2D_ERR_BACKEND: return "backend error";
    case L2D_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

const char* l2d_last_error(void) { return g_last_error.c_str(); }

l2d_status l2d_backend_available(const char* backend, int32_t* out_available) {
  return guarded([&] {
    REQUIRE_ARG(backend);
    REQUIRE_ARG(out_available);
    const std::string name = backend;
    if (name == "cpu") *out_available = 1;
    else if (name == "cuda") *out_available = l2d::cuda_backend_available() ? 1 : 0;
    else l2d::fail(L2D_ERR_INVALID_ARGUMENT, "unknown backend \"", name, "\" (expected \"cpu\" or \"cuda\")");
  });
}

// ---- tensor maps ----

l2d_status l2d_tmap_create(l2d_tmap** out_map) {
  return guarded([&] {
    REQUIRE_ARG(out_map);
    *out_map = new l2d_tmap();
  });
}

l2d_status l2d_tmap_free(l2d_tmap* map) {
  return guarded([&] { delete map; });
}

l2d_status l2d_tmap_set(l2d_tmap* map, const char* name, int32_t dtype, int32_t ndim, const int64_t* shape,
                        const void* data, uint64_t nbytes) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(name);
    l2d::HostTensor t;
    t.dtype = checked_dtype(dtype);
    t.shape = read_shape(ndim, shape);
    const uint64_t expected = uint64_t(l2d::shape_numel(t.shape)) * l2d::dtype_size(t.dtype);
    L2D_REQUIRE(nbytes == expected, "tensor \"", name, "\" ", l2d::dtype_name(t.dtype), l2d::shape_str(t.shape),
                " needs ", expected, " bytes, got ", nbytes);
    L2D_REQUIRE(nbytes == 0 || data != nullptr, "data must not be null");
    t.bytes.resize(nbytes);
    if (nbytes) std::memcpy(t.bytes.data(), data, nbytes);
    map->map.put(name, std::move(t));
  });
}

l2d_status l2d_tmap_set_philox(l2d_tmap* map, const char* name, int32_t ndim, const int64_t* shape, int32_t kind,
                               uint32_t seed, uint32_t stream, uint32_t draw) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(name);
    L2D_REQUIRE(kind == 0 || kind == 1, "philox kind must be 0 (weight) or 1 (normal), got ", kind);
    map->map.put(name, l2d::philox_tensor(name, read_shape(ndim, shape), l2d::PhiloxKind(kind), seed, stream, draw));
  });
}

l2d_status l2d_tmap_info(const l2d_tmap* map, const char* name, int32_t* out_dtype, int32_t* out_ndim,
                         int64_t* out_shape) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(name);
    REQUIRE_ARG(out_dtype);
    REQUIRE_ARG(out_ndim);
    REQUIRE_ARG(out_shape);
    const l2d::HostTensor& t = map->map.at(name, "l2d_tmap_info");
    *out_dtype = t.dtype;
    *out_ndim = int32_t(t.shape.size());
    for (size_t i = 0; i < t.shape.size(); ++i) out_shape[i] = t.shape[i];
  });
}

l2d_status l2d_tmap_get(const l2d_tmap* map, const char* name, void* dst, uint64_t nbytes) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(name);
    const l2d::HostTensor& t = map->map.at(name, "l2d_tmap_get");
    L2D_REQUIRE(nbytes == t.bytes.size(), "tensor \"", name, "\" has ", t.bytes.size(), " bytes, buffer has ", nbytes);
    L2D_REQUIRE(nbytes == 0 || dst != nullptr, "dst must not be null");
    if (nbytes) std::memcpy(dst, t.bytes.data(), nbytes);
  });
}

l2d_status l2d_tmap_remove(l2d_tmap* map, const char* name) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(name);
    map->map.entries.erase(name);
  });
}

l2d_status l2d_tmap_count(const l2d_tmap* map, int32_t* out_count) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(out_count);
    *out_count = int32_t(map->map.entries.size());
  });
}

l2d_status l2d_tmap_name(const l2d_tmap* map, int32_t index, char* buf, uint64_t buf_size) {
  return guarded([&] {
    REQUIRE_ARG(map);
    REQUIRE_ARG(buf);
    L2D_REQUIRE(index >= 0 && size_t(index) < map->map.entries.size(), "tensor index ", index, " out of range");
    auto it = map->map.entries.begin();
    std::advance(it, index);
    L2D_REQUIRE(it->first.size() + 1 <= buf_size, "name buffer too small: need ", it->first.size() + 1, " bytes");
    std::memcpy(buf, it->first.c_str(), it->first.size() + 1);
  });
}

// ---- contexts ----

l2d_status l2d_context_create(const char* backend, const char* options_json, l2d_context** out_ctx) {
  return guarded([&] {
    REQUIRE_ARG(backend);
    REQUIRE_ARG(out_ctx);
    const l2d::Json options = parse_optional_json(options_json);
    auto ctx = std::make_shared<ContextImpl>();
    const std::string name = backend;
    if (name == "cpu") ctx->backend = l2d::make_cpu_backend(options);
    else if (name == "cuda") ctx->backend = l2d::make_cuda_backend(options);
    else l2d::fail(L2D_ERR_INVALID_ARGUMENT, "unknown backend \"", name, "\" (expected \"cpu\" or \"cuda\")");
    *out_ctx = new l2d_context{std::move(ctx), {}};
  });
}

l2d_status l2d_context_free(l2d_context* ctx) {
  return guarded([&] { delete ctx; });
}

l2d_status l2d_context_stats(l2d_context* ctx, const char** out_json) {
  return guarded([&] {
    REQUIRE_ARG(ctx);
    REQUIRE_ARG(out_json);
    l2d::Backend& be = *ctx->ptr->backend;
    const std::string stages = be.stage_times_json();  // may synchronise (pending CUDA events)
    g_scratch_json = "{\"backend\":\"" + be.name() + "\",\"bytes_in_use\":" + std::to_string(be.bytes_in_use()) +
                     ",\"graph_reserved_bytes\":" + std::to_string(be.graph_reserved_bytes()) +
                     ",\"peak_bytes\":" + std::to_string(be.peak_bytes()) + ",\"kernels\":" + be.kernel_info_json() +
                     "," + counters_json(ctx->ptr->counters) + ",\"stage_profiling\":" +
                     (be.stage_profiling() ? "true" : "false") + ",\"stages_ms\":" + stages + "}";
    *out_json = g_scratch_json.c_str();
  });
}

// Like l2d_context_stats, it records its message only per thread (l2d_last_error), not in the
// handle: the bench calls it from the main thread while other calls on the context's models run.
l2d_status l2d_context_profile(l2d_context* ctx, int32_t stages) {
  return guarded([&] {
    REQUIRE_ARG(ctx);
    L2D_REQUIRE(stages == 0 || stages == 1, "stages must be 0 or 1, got ", stages);
    ctx->ptr->backend->set_stage_profiling(stages == 1);
  });
}

// ---- models ----

l2d_status l2d_model_create(l2d_context* ctx, const char* kind, const char* config_json, const l2d_tmap* weights,
                            l2d_model** out_model) {
  return guarded_on(ctx, [&] {
    REQUIRE_ARG(ctx);
    REQUIRE_ARG(kind);
    REQUIRE_ARG(out_model);
    const l2d::Json config = parse_optional_json(config_json);
    static const l2d::TensorMap kEmpty;
    const l2d::TensorMap& w = weights ? weights->map : kEmpty;
    auto model = std::make_shared<ModelImpl>();
    model->ctx = ctx->ptr;
    attributed(*model->ctx, [&] { model->impl = l2d::find_model_factory(kind)(*model->ctx->backend, config, w); });
    *out_model = new l2d_model{std::move(model), {}};
  });
}

l2d_status l2d_model_free(l2d_model* model) {
  return guarded([&] { delete model; });
}

l2d_status l2d_model_run(l2d_model* model, const char* method, l2d_tmap* io) {
  return guarded_on(model, [&] {
    REQUIRE_ARG(model);
    REQUIRE_ARG(method);
    REQUIRE_ARG(io);
    attributed(*model->ptr->ctx, [&] { model->ptr->impl->run(method, io->map); });
  });
}

// ---- sessions ----

l2d_status l2d_session_create(l2d_model* model, const char* config_json, l2d_session** out_session) {
  return guarded_on(model, [&] {
    REQUIRE_ARG(model);
    REQUIRE_ARG(out_session);
    const l2d::Json config = parse_optional_json(config_json);
    auto session = std::make_unique<l2d_session>();
    session->models.push_back(model->ptr);
    attributed(*model->ptr->ctx, [&] { session->impl = model->ptr->impl->create_session(config); });
    *out_session = session.release();
  });
}

l2d_status l2d_session_free(l2d_session* session) {
  return guarded([&] { delete session; });
}

l2d_status l2d_session_run(l2d_session* session, const char* method, l2d_tmap* io) {
  return guarded_on(session, [&] {
    REQUIRE_ARG(session);
    REQUIRE_ARG(method);
    REQUIRE_ARG(io);
    attributed(*session->models.at(0)->ctx, [&] { session->impl->run(method, io->map); });
  });
}

l2d_status l2d_stream_create(l2d_model* unet, l2d_model* vae, l2d_model* depth, const char* config_json,
                             l2d_session** out_stream) {
  return guarded_on(unet, [&] {
    REQUIRE_ARG(unet);
    REQUIRE_ARG(vae);
    REQUIRE_ARG(depth);
    REQUIRE_ARG(out_stream);
    L2D_REQUIRE(unet->ptr->ctx == vae->ptr->ctx && unet->ptr->ctx == depth->ptr->ctx,
                "the unet, vae and depth models of a stream must share one context");
    const auto* u = dynamic_cast<const l2d::unet::UnetModel*>(unet->ptr->impl.get());
    const auto* v = l2d::model_component<l2d::Taesd>(*vae->ptr->impl);
    const auto* d = l2d::model_component<l2d::midas::Midas>(*depth->ptr->impl);
    L2D_REQUIRE(u, "the first model of a stream must be a \"unet\" model");
    L2D_REQUIRE(v, "the second model of a stream must be a \"taesd\" model");
    L2D_REQUIRE(d, "the third model of a stream must be a \"midas\" model");
    const l2d::Json config = parse_optional_json(config_json);
    auto session = std::make_unique<l2d_session>();
    session->models = {unet->ptr, vae->ptr, depth->ptr};
    attributed(*unet->ptr->ctx, [&] { session->impl = std::make_unique<l2d::LiveStream>(*u, *v, *d, config); });
    *out_stream = session.release();
  });
}

l2d_status l2d_stream_push(l2d_session* stream, const uint8_t* frame, uint64_t frame_size, int32_t width,
                           int32_t height, int32_t channels, uint8_t* out_rgb, uint64_t out_size, int32_t* out_ready) {
  return guarded_on(stream, [&] {
    REQUIRE_ARG(stream);
    REQUIRE_ARG(frame);
    REQUIRE_ARG(out_rgb);
    REQUIRE_ARG(out_ready);
    L2D_REQUIRE(width > 0 && height > 0 && width <= 16384 && height <= 16384, "frame size ", width, "x", height,
                " is outside 1..16384");
    L2D_REQUIRE(channels == 3 || channels == 4, "frames must have 3 (RGB) or 4 (RGBA) channels, got ", channels);
    L2D_REQUIRE(frame_size == uint64_t(width) * uint64_t(height) * uint64_t(channels), "a ", width, "x", height, "x",
                channels, " frame has ", uint64_t(width) * uint64_t(height) * uint64_t(channels), " bytes, got ",
                frame_size);
    auto* live = dynamic_cast<l2d::LiveStream*>(stream->impl.get());
    L2D_REQUIRE(live, "l2d_stream_push needs a stream created by l2d_stream_create");
    L2D_REQUIRE(out_size == uint64_t(live->width() * live->height() * 3), "out_rgb must hold ",
                live->width() * live->height() * 3, " bytes (stream ", live->width(), "x", live->height(), " RGB), got ",
                out_size);
    // Host time of a push = wall time - time blocked waiting for the device (bench: host ms per frame).
    ContextCounters& c = stream->models.at(0)->ctx->counters;
    const uint64_t wall0 = steady_ns(), cpu0 = thread_cpu_ns();
    bool ready = false;
    const uint64_t wait = attributed(*stream->models.at(0)->ctx,
                                     [&] { ready = live->push_frame({frame, width, height, channels}, out_rgb); });
    c.push_wall_ns += steady_ns() - wall0;
    c.push_cpu_ns += thread_cpu_ns() - cpu0;
    c.push_wait_ns += wait;
    ++c.pushes;
    *out_ready = ready ? 1 : 0;
  });
}

const char* l2d_context_last_error(const l2d_context* ctx) { return ctx ? ctx->last_error.c_str() : ""; }
const char* l2d_model_last_error(const l2d_model* model) { return model ? model->last_error.c_str() : ""; }
const char* l2d_session_last_error(const l2d_session* session) { return session ? session->last_error.c_str() : ""; }

}  // extern "C"
