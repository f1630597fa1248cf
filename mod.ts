/**
 * live2diff: real-time video-to-video translation with a video diffusion model (Live2Diff,
 * arXiv 2407.08701) from Deno, on a native C++/CUDA core loaded through FFI.
 *
 * The native library is built by `deno task build:native` (CMake, from `cuda/`). The CPU backend
 * runs everywhere and is the reference; the CUDA backend (fp16) is the fast path.
 *
 * {@linkcode Engine} loads an engine file (built from the checkpoints you have by
 * `deno task build-engine`, see engines/README.md) and {@linkcode Stream} runs one live video
 * through it: the first 8 frames warm up the KV caches, then every frame costs one UNet pass holding
 * all denoising steps. Without an engine, {@linkcode Engine.loadDefault} gives a tiny engine with
 * RANDOM weights (its output is noise-like) so everything runs anywhere.
 *
 * @example Stream frames through the default (random-weight) engine on the CPU
 * ```ts
 * import { Engine } from "./mod.ts";
 *
 * using engine = await Engine.loadDefault({ device: "cpu" });
 * if (engine.notice) console.warn(engine.notice); // random weights: build a real engine
 * using stream = await engine.createStream({ prompt: "a watercolor painting", width: 64, height: 64, tIndexList: [32, 45] });
 * const frame = { data: new Uint8Array(80 * 60 * 3).fill(90), width: 80, height: 60 }; // any size, RGB
 * let out = null;
 * for (let i = 0; i < 10 && !out; i++) out = await stream.push(frame); // 8 warm-up + latency frames first
 * console.log(out?.width, out?.height); // 64 64
 * ```
 *
 * @example Run one native op on the CPU backend (the low-level API: Context, Model, TensorMap)
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
export type { EngineStyle } from "./engines/format.ts";
export { type Frame, Stream, type StreamOptions, WARMUP_FRAMES } from "./ffi/stream.ts";
export { EngineError, type EngineErrorCode, STATUS_CODES } from "./ffi/errors.ts";
export {
  backendAvailable,
  type BackendName,
  Context,
  type ContextOptions,
  type ContextStats,
  type FrameGeometry,
  type LaunchCounts,
  Model,
  NativeHandle,
  NativeStream,
  type PhiloxFill,
  Session,
  TensorMap,
} from "./ffi/native.ts";
export { type DType, type HostTensor, numel, toFloat32 } from "./ffi/host_tensor.ts";
export {
  CheckpointError,
  type CheckpointFile,
  openCheckpoint,
  type TensorInfo,
  writeSafetensors,
} from "./ffi/formats/mod.ts";
export { type ClipEncodeOptions, ClipTokenizer, type ClipTokenizerConfig } from "./ffi/clip_tokenizer.ts";
export { fnv1a32, philoxNormal, philoxWeight } from "./ffi/philox.ts";
export { loadCheckpointInto, type LoadCheckpointOptions } from "./ffi/weights.ts";
