/**
 * The one `Deno.dlopen` symbol table of liblive2diff. Every entry mirrors a function of
 * `cuda/include/l2d.h` (tests/ffi_symbols_test.ts keeps the two in sync); each parameter carries
 * its C type as a comment. Slow calls (model creation, model and session methods) are
 * `nonblocking` so they run off the JS thread and return Promises.
 *
 * @module
 */

export const symbols = {
  l2d_abi_version: { parameters: [], result: "u32" },
  l2d_status_string: { parameters: ["i32"], /* int32_t status */ result: "pointer" },
  l2d_last_error: { parameters: [], result: "pointer" },
  l2d_backend_available: {
    parameters: [
      "buffer", // const char* backend
      "buffer", // int32_t* out_available
    ],
    result: "i32",
  },

  l2d_tmap_create: { parameters: ["buffer" /* l2d_tmap** out_map */], result: "i32" },
  l2d_tmap_free: { parameters: ["pointer" /* l2d_tmap* map */], result: "i32" },
  l2d_tmap_set: {
    parameters: [
      "pointer", // l2d_tmap* map
      "buffer", // const char* name
      "i32", // int32_t dtype
      "i32", // int32_t ndim
      "buffer", // const int64_t* shape
      "buffer", // const void* data
      "u64", // uint64_t nbytes
    ],
    result: "i32",
  },
  l2d_tmap_set_philox: {
    parameters: [
      "pointer", // l2d_tmap* map
      "buffer", // const char* name
      "i32", // int32_t ndim
      "buffer", // const int64_t* shape
      "i32", // int32_t kind
      "u32", // uint32_t seed
      "u32", // uint32_t stream
      "u32", // uint32_t draw
    ],
    result: "i32",
  },
  l2d_tmap_info: {
    parameters: [
      "pointer", // const l2d_tmap* map
      "buffer", // const char* name
      "buffer", // int32_t* out_dtype
      "buffer", // int32_t* out_ndim
      "buffer", // int64_t* out_shape
    ],
    result: "i32",
  },
  l2d_tmap_get: {
    parameters: [
      "pointer", // const l2d_tmap* map
      "buffer", // const char* name
      "buffer", // void* dst
      "u64", // uint64_t nbytes
    ],
    result: "i32",
  },
  l2d_tmap_remove: {
    parameters: [
      "pointer", // l2d_tmap* map
      "buffer", // const char* name
    ],
    result: "i32",
  },
  l2d_tmap_count: {
    parameters: [
      "pointer", // const l2d_tmap* map
      "buffer", // int32_t* out_count
    ],
    result: "i32",
  },
  l2d_tmap_name: {
    parameters: [
      "pointer", // const l2d_tmap* map
      "i32", // int32_t index
      "buffer", // char* buf
      "u64", // uint64_t buf_size
    ],
    result: "i32",
  },

  l2d_context_create: {
    parameters: [
      "buffer", // const char* backend
      "buffer", // const char* options_json
      "buffer", // l2d_context** out_ctx
    ],
    result: "i32",
  },
  l2d_context_free: { parameters: ["pointer" /* l2d_context* ctx */], result: "i32" },
  l2d_context_stats: {
    parameters: [
      "pointer", // l2d_context* ctx
      "buffer", // const char** out_json
    ],
    result: "i32",
  },

  l2d_context_profile: {
    parameters: [
      "pointer", // l2d_context* ctx
      "i32", // int32_t stages
    ],
    result: "i32",
  },

  l2d_context_last_error: { parameters: ["pointer" /* const l2d_context* ctx */], result: "pointer" },

  l2d_model_create: {
    parameters: [
      "pointer", // l2d_context* ctx
      "buffer", // const char* kind
      "buffer", // const char* config_json
      "pointer", // const l2d_tmap* weights
      "buffer", // l2d_model** out_model
    ],
    result: "i32",
    nonblocking: true,
  },
  l2d_model_free: { parameters: ["pointer" /* l2d_model* model */], result: "i32" },
  l2d_model_run: {
    parameters: [
      "pointer", // l2d_model* model
      "buffer", // const char* method
      "pointer", // l2d_tmap* io
    ],
    result: "i32",
    nonblocking: true,
  },

  l2d_model_last_error: { parameters: ["pointer" /* const l2d_model* model */], result: "pointer" },

  l2d_session_create: {
    parameters: [
      "pointer", // l2d_model* model
      "buffer", // const char* config_json
      "buffer", // l2d_session** out_session
    ],
    result: "i32",
  },
  l2d_session_free: { parameters: ["pointer" /* l2d_session* session */], result: "i32" },
  l2d_session_run: {
    parameters: [
      "pointer", // l2d_session* session
      "buffer", // const char* method
      "pointer", // l2d_tmap* io
    ],
    result: "i32",
    nonblocking: true,
  },
  l2d_session_last_error: { parameters: ["pointer" /* const l2d_session* session */], result: "pointer" },

  l2d_stream_create: {
    parameters: [
      "pointer", // l2d_model* unet
      "pointer", // l2d_model* vae
      "pointer", // l2d_model* depth
      "buffer", // const char* config_json
      "buffer", // l2d_session** out_stream
    ],
    result: "i32",
  },
  l2d_stream_push: {
    parameters: [
      "pointer", // l2d_session* stream
      "buffer", // const uint8_t* frame
      "u64", // uint64_t frame_size
      "i32", // int32_t width
      "i32", // int32_t height
      "i32", // int32_t channels
      "buffer", // uint8_t* out_rgb
      "u64", // uint64_t out_size
      "buffer", // int32_t* out_ready
    ],
    result: "i32",
    nonblocking: true,
  },
} as const;

/** The ABI version this symbol table was written for (must equal `L2D_ABI_VERSION`). */
export const ABI_VERSION = 2;
