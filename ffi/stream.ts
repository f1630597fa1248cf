/**
 * {@linkcode Stream}: one live video stream through an `Engine`. Frames go in as RGB or
 * RGBA bytes of any size (scaled to cover the stream size and centre-cropped), frames come out as
 * RGB bytes at the stream size.
 *
 * Timing: the first 8 frames are the warm-up (Live2Diff's sink frames: they fill the KV caches and
 * produce no output from `push`); afterwards every push runs ONE UNet batch holding all T
 * denoising steps, and its output is the frame pushed T-1 pushes earlier ({@linkcode Stream.latency}),
 * so the first T-1 streamed pushes also return null, as in the original.
 *
 * @module
 */

import type { HostTensor } from "./host_tensor.ts";
import { type Model, NativeStream, TensorMap } from "./native.ts";
import { checkStreamOptions, type StreamDefaults, type StreamOptions } from "./stream_options.ts";

export type { StreamOptions } from "./stream_options.ts";

/**
 * What a stream needs from its engine (an `Engine` is one): the style's defaults and prompt
 * encoding. An interface rather than the class, so this module does not import engine.ts, which
 * imports it.
 */
export interface PromptEncoder {
  /** The engine's default schedule. */
  readonly style: Readonly<StreamDefaults>;
  /** Encodes a prompt to the UNet's text conditioning. */
  encodePrompt(prompt: string, options: { applyTemplate?: boolean; clipSkip?: number }): Promise<HostTensor>;
}

/** A video frame: tightly packed RGB or RGBA bytes, row-major. */
export interface Frame {
  /** `width * height * channels` bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 3 (RGB) or 4 (RGBA). @default inferred from the data length */
  channels?: 3 | 4;
}

/** The native models a stream runs on (given by the engine). */
export interface StreamModels {
  unet: Model;
  vae: Model;
  depth: Model;
  scheduler: Record<string, unknown>;
}

/** Number of warm-up frames (Live2Diff's sink size). */
export const WARMUP_FRAMES = 8;

/** Validates a frame and returns its channel count. */
export function frameChannels(frame: Frame): 3 | 4 {
  if (!frame || !(frame.data instanceof Uint8Array)) throw new TypeError("Invalid frame: data must be a Uint8Array");
  const { width, height } = frame;
  if (
    !Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || width > 16384 ||
    height > 16384
  ) {
    throw new RangeError(`Invalid frame: size ${width}x${height} must be 1..16384 on each side`);
  }
  const channels = frame.channels ?? (frame.data.byteLength === width * height * 4 ? 4 : 3);
  if (channels !== 3 && channels !== 4) throw new RangeError(`Invalid frame: channels must be 3 or 4, got ${channels}`);
  if (frame.data.byteLength !== width * height * channels) {
    throw new RangeError(
      `Invalid frame: ${width}x${height}x${channels} needs ${
        width * height * channels
      } bytes, got ${frame.data.byteLength}`,
    );
  }
  return channels;
}

/**
 * A live stream. `push` frames one at a time (one native call each) or pipe a `ReadableStream` of
 * frames through {@linkcode Stream.transform}.
 *
 * @example
 * ```ts
 * import { Engine } from "./engine.ts";
 * using engine = await Engine.loadDefault({ device: "cpu" });
 * using stream = await engine.createStream({ prompt: "an oil painting", width: 64, height: 64, tIndexList: [32, 45] });
 * const camera = Array.from({ length: 10 }, (_, i) => ({ data: new Uint8Array(64 * 64 * 4).fill(i * 20), width: 64, height: 64 }));
 * const outputs = [];
 * for (const frame of camera) {
 *   const out = await stream.push(frame); // null for the 8 warm-up frames and the first stream.latency frames
 *   if (out) outputs.push(out);
 * }
 * console.assert(outputs.length === 10 - 8 - stream.latency);
 * ```
 */
export class Stream implements Disposable {
  /** Output width in pixels. */
  readonly width: number;
  /** Output height in pixels. */
  readonly height: number;
  /** Denoising steps per frame (T). */
  readonly steps: number;
  /** Frames between a push and the push that returns its output (T - 1). */
  readonly latency: number;
  readonly #engine: PromptEncoder;
  readonly #native: NativeStream;
  readonly #prompting: { applyTemplate: boolean; clipSkip?: number };
  #out: Uint8Array;

  private constructor(
    engine: PromptEncoder,
    native: NativeStream,
    steps: number,
    prompting: { applyTemplate: boolean; clipSkip?: number },
  ) {
    this.#engine = engine;
    this.#prompting = prompting;
    this.#native = native;
    this.width = native.width;
    this.height = native.height;
    this.steps = steps;
    this.latency = steps - 1;
    this.#out = new Uint8Array(this.width * this.height * 3);
  }

  /** @internal use `Engine.createStream`. Every option is checked before the native stream exists. */
  static async create(engine: PromptEncoder, models: StreamModels, options: StreamOptions): Promise<Stream> {
    const o = checkStreamOptions(options, engine.style);
    const native = NativeStream.create(models.unet, models.vae, models.depth, {
      width: o.width,
      height: o.height,
      seed: o.seed,
      scheduler: { ...models.scheduler, ...o.scheduler },
      debug: o.debug,
      ...(o.similarImageFilter ? { similar_image_filter: o.similarImageFilter } : {}),
    });
    const stream = new Stream(engine, native, o.steps, { applyTemplate: o.applyTemplate, clipSkip: o.clipSkip });
    try {
      await stream.setPrompt(options.prompt);
    } catch (e) {
      native.close();
      throw e;
    }
    return stream;
  }

  /** **Low-level**: the native session (debug/golden methods "warmup", "push", "get_state", ...). */
  get session(): NativeStream {
    return this.#native;
  }

  /** Changes the prompt mid-stream: re-encodes the text, keeps the caches (no new warm-up). */
  async setPrompt(prompt: string): Promise<void> {
    const embeds = await this.#engine.encodePrompt(prompt, this.#prompting);
    using io = new TensorMap();
    io.set("prompt_embeds", embeds);
    await this.#native.run("set_prompt", io);
  }

  /**
   * Pushes one frame. Resolves to the output frame (RGB, stream size) or null while warming up and
   * for the first {@linkcode latency} streamed frames. The returned bytes are a fresh copy.
   */
  async push(frame: Frame): Promise<Frame | null> {
    const channels = frameChannels(frame);
    const ready = await this.#native.pushFrame(
      frame.data,
      { width: frame.width, height: frame.height, channels },
      this.#out,
    );
    if (!ready) return null;
    return { data: this.#out.slice(), width: this.width, height: this.height, channels: 3 };
  }

  /**
   * Explicit warm-up on exactly 8 frames; resolves to their 8 output frames (the original's
   * `prepare`). Without it, the first 8 pushes warm up implicitly.
   */
  async warmup(frames: Frame[]): Promise<Frame[]> {
    if (!Array.isArray(frames) || frames.length !== WARMUP_FRAMES) {
      throw new RangeError(`Cannot warm up: exactly ${WARMUP_FRAMES} frames are needed, got ${frames?.length}`);
    }
    const c0 = frameChannels(frames[0]!);
    const { width, height } = frames[0]!;
    const data = new Uint8Array(WARMUP_FRAMES * width * height * c0);
    frames.forEach((f, i) => {
      if (frameChannels(f) !== c0 || f.width !== width || f.height !== height) {
        throw new RangeError("Cannot warm up: all 8 frames must have the same size and channels");
      }
      data.set(f.data, i * width * height * c0);
    });
    using io = new TensorMap();
    io.set("frames", { dtype: "U8", shape: [WARMUP_FRAMES, height, width, c0], data });
    await this.#native.run("warmup", io);
    const out = io.get("frames_u8").data;
    const size = this.width * this.height * 3;
    return Array.from({ length: WARMUP_FRAMES }, (_, i) => ({
      data: out.slice(i * size, (i + 1) * size),
      width: this.width,
      height: this.height,
      channels: 3 as const,
    }));
  }

  /** Starts over: clears the caches and buffers; the next 8 frames warm up again. */
  async reset(): Promise<void> {
    using io = new TensorMap();
    await this.#native.run("reset", io);
  }

  /**
   * A TransformStream of frames: every input frame is pushed, every output frame is enqueued
   * (warm-up and latency frames produce nothing).
   */
  transform(): TransformStream<Frame, Frame> {
    return new TransformStream<Frame, Frame>({
      transform: async (frame, controller) => {
        const out = await this.push(frame);
        if (out) controller.enqueue(out);
      },
    });
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /** Releases the stream's caches (idempotent). */
  close(): void {
    this.#native.close();
  }

  /** Calls {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
