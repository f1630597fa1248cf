/**
 * live2diff: real-time video-to-video translation with a video diffusion model (Live2Diff,
 * arXiv 2407.08701) from Deno, on a native C++/CUDA core loaded through FFI.
 *
 * The native library is built by `deno task build:native` (CMake, from `cuda/`). The CPU backend
 * runs everywhere and is the reference; the CUDA backend (fp16) is the fast path.
 *
 * Low-level building blocks are exported today: {@linkcode Context} (a backend), {@linkcode Model}
 * (a network with its weights: "unet", "taesd", "clip_text", "midas"), {@linkcode Session}
 * (per-stream state such as the UNet's KV caches) and {@linkcode TensorMap} (named tensors that
 * cross the FFI), plus the checkpoint readers, the CLIP tokenizer and the portable Philox
 * generator.
 *
 * @example Run one native op on the CPU backend
 * ```ts
 * import { Context, Model, TensorMap } from "./mod.ts";
 *
 * using ctx = Context.create("cpu");
 * using model = await Model.create(ctx, "ops", {});
 * using io = new TensorMap();
 * io.setF32("x", new Float32Array([-1, 0.5]), [2]);
 * io.setF32("params", new Float32Array([0, 0, 0]), [3]); // SiLU
 * await model.run("unary", io);
 * console.log(io.getF32("y")); // Float32Array [ -0.2689..., 0.3112... ]
 * ```
 *
 * @module
 */

export { type EncodePromptOptions, Engine, type EngineLoadOptions } from "./ffi/engine.ts";
export { type Frame, Stream, type StreamOptions, WARMUP_FRAMES } from "./ffi/stream.ts";
export { EngineError, type EngineErrorCode } from "./ffi/errors.ts";
export {
  backendAvailable,
  type BackendName,
  Context,
  type ContextOptions,
  Model,
  NativeStream,
  type PhiloxFill,
  Session,
  TensorMap,
} from "./ffi/native.ts";
export { type DType, type HostTensor, numel, toFloat32 } from "./ffi/host_tensor.ts";
export { CheckpointError, type CheckpointFile, openCheckpoint, writeSafetensors } from "./ffi/formats/mod.ts";
export { ClipTokenizer } from "./ffi/clip_tokenizer.ts";
export { fnv1a32, philoxNormal, philoxWeight } from "./ffi/philox.ts";
export { loadCheckpointInto, type LoadCheckpointOptions } from "./ffi/weights.ts";
