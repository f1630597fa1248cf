/*
 * l2d.h: the C ABI of liblive2diff, the one contract between the native core and its callers
 * (the Deno FFI layer in ffi/). Everything else in cuda/ is private.
 *
 * Rules every function follows:
 *   - it returns an l2d_status; L2D_OK (0) means success, outputs go through out-pointers;
 *   - on failure l2d_last_error() describes what went wrong (per thread, valid until the next
 *     l2d_* call on that thread); calls that take a context, model or session also record the
 *     message in that handle (l2d_*_last_error), because an FFI caller may run slow calls on a
 *     worker thread and read the error from another;
 *   - it never aborts, exits or prints: C++ exceptions stop at this boundary;
 *   - handles are opaque; *_free(NULL) is a no-op; a handle must not be used after it is freed.
 *   - a model keeps its context alive and a session keeps its model alive, so handles may be freed
 *     in any order.
 *
 * Data crosses the boundary in tensor maps (l2d_tmap): named host tensors (C-contiguous,
 * little-endian). Weights, the inputs and outputs of model methods and session state are all
 * passed that way, so one small ABI serves every network and every test.
 *
 * Threading: different handles may be used from different threads at once; one handle must not be
 * used by two threads at the same time (the TS layer serialises calls per handle).
 */
#ifndef L2D_H
#define L2D_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define L2D_API __declspec(dllexport)
#else
#define L2D_API __attribute__((visibility("default")))
#endif

/* Bumped on every incompatible change of this header; the TS side refuses a different version. */
#define L2D_ABI_VERSION 2

typedef enum l2d_status {
  L2D_OK = 0,
  L2D_ERR_INVALID_ARGUMENT = 1, /* a null pointer, a wrong size, an unknown name */
  L2D_ERR_NOT_FOUND = 2,        /* a tensor, method or model kind that does not exist */
  L2D_ERR_FORMAT = 3,           /* weights or configs that do not fit the model */
  L2D_ERR_UNSUPPORTED = 4,      /* a backend, dtype or option this build does not have */
  L2D_ERR_OUT_OF_MEMORY = 5,
  L2D_ERR_BACKEND = 6, /* a CUDA (or other device) error */
  L2D_ERR_INTERNAL = 7
} l2d_status;

/* Element types of tensor-map entries (same names as safetensors). */
typedef enum l2d_dtype {
  L2D_F32 = 0,
  L2D_F16 = 1,
  L2D_BF16 = 2,
  L2D_I64 = 3,
  L2D_I32 = 4,
  L2D_U8 = 5,
  L2D_BOOL = 6
} l2d_dtype;

#define L2D_MAX_DIMS 8

typedef struct l2d_tmap l2d_tmap;       /* named host tensors */
typedef struct l2d_context l2d_context; /* one backend (cpu or cuda) and its device memory */
typedef struct l2d_model l2d_model;     /* one network with its weights on a context */
typedef struct l2d_session l2d_session; /* per-stream state of a model (KV caches, buffers) */

/* ---- library ---------------------------------------------------------------------------- */

/* The L2D_ABI_VERSION this library was built with. Never fails. */
L2D_API uint32_t l2d_abi_version(void);
/* A static English name of a status code. Never fails, never NULL. */
L2D_API const char* l2d_status_string(int32_t status);
/* The message of the last failure on this thread ("" if none). Never NULL. */
L2D_API const char* l2d_last_error(void);
/* *out_available = 1 when the named backend ("cpu", "cuda") is compiled in and has a device. */
L2D_API l2d_status l2d_backend_available(const char* backend, int32_t* out_available);

/* ---- tensor maps -------------------------------------------------------------------------- */

L2D_API l2d_status l2d_tmap_create(l2d_tmap** out_map);
L2D_API l2d_status l2d_tmap_free(l2d_tmap* map);
/* Copies nbytes of data (must equal numel(shape) * size(dtype)) under name, replacing any entry. */
L2D_API l2d_status l2d_tmap_set(l2d_tmap* map, const char* name, int32_t dtype, int32_t ndim,
                                const int64_t* shape, const void* data, uint64_t nbytes);
/* Fills name with float32 Philox values (golden README rules). kind 0: the weight rule for
 * parameter `name` with key seed; kind 1: normal(shape, seed, stream, draw). */
L2D_API l2d_status l2d_tmap_set_philox(l2d_tmap* map, const char* name, int32_t ndim, const int64_t* shape,
                                       int32_t kind, uint32_t seed, uint32_t stream, uint32_t draw);
/* Shape of an entry; shape must have room for L2D_MAX_DIMS values. */
L2D_API l2d_status l2d_tmap_info(const l2d_tmap* map, const char* name, int32_t* out_dtype, int32_t* out_ndim,
                                 int64_t* out_shape);
/* Copies an entry's bytes out; nbytes must equal its byte size. */
L2D_API l2d_status l2d_tmap_get(const l2d_tmap* map, const char* name, void* dst, uint64_t nbytes);
L2D_API l2d_status l2d_tmap_remove(l2d_tmap* map, const char* name);
L2D_API l2d_status l2d_tmap_count(const l2d_tmap* map, int32_t* out_count);
/* Writes the index-th name (sorted order) as a NUL-terminated string into buf. */
L2D_API l2d_status l2d_tmap_name(const l2d_tmap* map, int32_t index, char* buf, uint64_t buf_size);

/* ---- contexts, models, sessions ------------------------------------------------------------- */

/* backend: "cpu" or "cuda". options_json (may be NULL): {"precision": "fp16"|"fp32", "threads": n,
 * "device": n}. */
L2D_API l2d_status l2d_context_create(const char* backend, const char* options_json, l2d_context** out_ctx);
L2D_API l2d_status l2d_context_free(l2d_context* ctx);
/* Statistics as a JSON object; the string lives until the next call on this thread. May wait for
 * the device (pending profiling events). Members (counts are cumulative since the context was made):
 *   "backend", "bytes_in_use" (bytes tensors hold now), "graph_reserved_bytes" (bytes captured CUDA
 *   graphs hold between replays: their intermediates, which no tensor holds and nothing else may
 *   take; not in bytes_in_use; 0 on the CPU), "peak_bytes" (the high-water mark of bytes_in_use +
 *   graph_reserved_bytes: the device memory the work needed at once);
 *   "kernels": the dense-kernel paths and counters (CUDA; null on the CPU);
 *   "launches": {"kernels" (CUDA kernel launches issued eagerly), "vendor_calls" (cuBLASLt/cuDNN
 *     calls, each one or more kernels), "graphs" (CUDA-graph launches), "graph_kernels" (kernel nodes
 *     in them), "captured_kernels" (launches recorded into graphs), "cpu_loops" (CPU backend:
 *     top-level thread-pool loops, its stand-in for kernel launches), "syncs" (host waits for the
 *     device), "copies" (memory copies and fills issued eagerly, apart from the launches: CUDA
 *     cudaMemcpy and cudaMemset calls; CPU: copies between caller and backend memory, i.e. from/to
 *     host tensors, frame uploads and downloads), "graph_copies" (memcpy/memset nodes in the graphs
 *     launched), "captured_copies" (copies recorded into graphs)}, made by calls on the context and
 *     its models and sessions;
 *   "device_wait_ms": host time those calls spent blocked waiting for the device;
 *   "push": {"calls", "wall_ms", "device_wait_ms", "thread_cpu_ms"} of l2d_stream_push (host time
 *     of the pushes = wall_ms - device_wait_ms);
 *   "stage_profiling": whether stages are being timed (l2d_context_profile);
 *   "stages_ms": {"encode"|"depth"|"unet"|"decode": {"calls", "ms"}} summed over the pushed frames
 *     while profiling was on (CUDA: device time between events; CPU: wall time). */
L2D_API l2d_status l2d_context_stats(l2d_context* ctx, const char** out_json);
/* stages = 1 turns on the per-stage timing of stream pushes (CUDA: two events per stage, none
 * while a CUDA graph is being captured), 0 turns it off (the default: no per-frame cost). With
 * several streams on one context pushing at once, a stage's device time includes the others'. Its
 * error message is only in l2d_last_error (as for l2d_context_stats). */
L2D_API l2d_status l2d_context_profile(l2d_context* ctx, int32_t stages);
/* The message of the last failed call made on this handle ("" if none). Never NULL. */
L2D_API const char* l2d_context_last_error(const l2d_context* ctx);

/* Builds a network of the given kind ("unet", "taesd", "clip_text", "midas", "ops", ...) from a
 * JSON config and named weights (the map is only read; it may be freed afterwards). */
L2D_API l2d_status l2d_model_create(l2d_context* ctx, const char* kind, const char* config_json,
                                    const l2d_tmap* weights, l2d_model** out_model);
L2D_API l2d_status l2d_model_free(l2d_model* model);
/* Runs a stateless method: reads its inputs from io by name and writes its outputs into io. */
L2D_API l2d_status l2d_model_run(l2d_model* model, const char* method, l2d_tmap* io);
L2D_API const char* l2d_model_last_error(const l2d_model* model);

/* Per-stream state of a model (config_json sizes it: steps, height, width, ...). */
L2D_API l2d_status l2d_session_create(l2d_model* model, const char* config_json, l2d_session** out_session);
L2D_API l2d_status l2d_session_free(l2d_session* session);
/* Runs a stateful method (e.g. "warmup", "step", "get_state", "set_state") against io. */
L2D_API l2d_status l2d_session_run(l2d_session* session, const char* method, l2d_tmap* io);
L2D_API const char* l2d_session_last_error(const l2d_session* session);

/* ---- live streams ---------------------------------------------------------------------------- */

/* A live stream (the Live2Diff streaming pipeline) over three models of one context: a "unet", a
 * "taesd" and a "midas". It is a session: l2d_session_run methods "set_prompt" (prompt_embeds
 * [1, L, C]), "warmup" (frames U8 [8, H, W, 3|4]), "push" (frame U8 [H, W, 3|4]), "get_state",
 * "schedule", "reset"; free it with l2d_session_free. config_json: {"width", "height", "seed",
 * "scheduler": {"t_index_list" | "strength" + "steps", "num_inference_steps", "beta_schedule", ...},
 * "similar_image_filter": {"threshold", "max_skip_frames"}, "debug"}. */
L2D_API l2d_status l2d_stream_create(l2d_model* unet, l2d_model* vae, l2d_model* depth, const char* config_json,
                                     l2d_session** out_stream);
/* The per-frame hot path: one frame in (uint8 [height, width, channels], channels 3 = RGB or
 * 4 = RGBA, any size: scaled to cover the stream size and centre-cropped; frame_size must equal
 * height * width * channels, so a malformed frame is refused, never over-read), maybe one out.
 * The first 8 frames are the warm-up. *out_ready = 1 when out_rgb (stream height * width * 3
 * bytes, out_size must equal that) received a frame. Set a prompt first. */
L2D_API l2d_status l2d_stream_push(l2d_session* stream, const uint8_t* frame, uint64_t frame_size, int32_t width,
                                   int32_t height, int32_t channels, uint8_t* out_rgb, uint64_t out_size,
                                   int32_t* out_ready);

#ifdef __cplusplus
}
#endif

#endif /* L2D_H */
