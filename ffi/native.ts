/**
 * Low-level resources of the native core: tensor maps, contexts (a backend), models (a network
 * with weights) and sessions (per-stream state). The high-level streaming API is built on these;
 * the golden runner and tests use them directly to run single networks.
 *
 * Each class owns one native handle: `close()` is idempotent, `[Symbol.dispose]` calls it, and any
 * use after close throws `EngineError("CLOSED")`. Slow calls return Promises; a second call on the
 * same handle while one is running throws `EngineError("BUSY")`, so native state is never shared
 * between threads.
 *
 * @example
 * ```ts
 * import { Context, Model, TensorMap } from "./native.ts";
 * using ctx = Context.create("cpu");
 * using model = await Model.create(ctx, "ops", {});
 * using io = new TensorMap();
 * io.setF32("x", new Float32Array([1, -2, 3]), [3]);
 * await model.run("identity", io);
 * console.assert(io.getF32("y")[1] === -2);
 * ```
 *
 * @module
 */

import { EngineError } from "./errors.ts";
import { type DType, DTYPE_SIZE, type HostTensor, numel } from "./host_tensor.ts";
import { cString, native, pointerSlot, readCString, slotPointer, unwrap } from "./library.ts";

const DTYPE_CODES: Record<DType, number> = { F32: 0, F16: 1, BF16: 2, I64: 3, I32: 4, U8: 5, BOOL: 6 };
const DTYPE_NAMES: DType[] = ["F32", "F16", "BF16", "I64", "I32", "U8", "BOOL"];

/** Backends of the native core. */
export type BackendName = "cpu" | "cuda";

/** True when the named backend is compiled in and has a device. */
export function backendAvailable(backend: BackendName): boolean {
  const out = new Int32Array(1);
  unwrap(native().l2d_backend_available(cString(backend), out), `Cannot query backend "${backend}"`);
  return out[0] === 1;
}

/** Shared handle bookkeeping of every native resource: closed/busy checks with clear errors. */
export abstract class NativeHandle implements Disposable {
  #ptr: Deno.PointerValue;
  #busy = false;
  /** What the handle is, for error messages. */
  protected abstract readonly kind: string;

  /** Wraps a handle the library returned. */
  protected constructor(ptr: Deno.PointerValue) {
    this.#ptr = ptr;
  }

  /** **UNSAFE**: the raw native handle (null after close). */
  get unsafeHandle(): Deno.PointerValue {
    return this.#ptr;
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#ptr === null;
  }

  /** The handle, or a CLOSED / BUSY EngineError. */
  protected handle(): Deno.PointerValue {
    if (this.#ptr === null) throw new EngineError("CLOSED", `Cannot use ${this.kind}: it is closed`);
    if (this.#busy) throw new EngineError("BUSY", `Cannot use ${this.kind}: a call on it is still running`);
    return this.#ptr;
  }

  /** Runs an async native call with the handle marked busy for its duration. */
  protected async exclusive<T>(fn: (ptr: Deno.PointerValue) => Promise<T>): Promise<T> {
    const ptr = this.handle();
    this.#busy = true;
    try {
      return await fn(ptr);
    } finally {
      this.#busy = false;
    }
  }

  /** Releases the native handle (called once by close). */
  protected abstract free(ptr: Deno.PointerValue): void;

  /** Releases the native handle. Idempotent; throws BUSY while a call is running. */
  close(): void {
    if (this.#ptr === null) return;
    if (this.#busy) throw new EngineError("BUSY", `Cannot close ${this.kind}: a call on it is still running`);
    const ptr = this.#ptr;
    this.#ptr = null;
    this.free(ptr);
  }

  /** Calls {@linkcode close}. Enables `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Options of {@linkcode TensorMap.setPhilox}. */
export interface PhiloxFill {
  /** "weight": the golden README's weight rule for parameter `name`; "normal": Box-Muller draws. */
  kind: "weight" | "normal";
  /** Philox key. */
  seed: number;
  /** Normal draws only. @default 0 */
  stream?: number;
  /** Normal draws only. @default 0 */
  draw?: number;
}

/**
 * Named host tensors owned by the native library: how weights, inputs and outputs cross the FFI.
 *
 * @example
 * ```ts
 * import { TensorMap } from "./native.ts";
 * using m = new TensorMap();
 * m.setF32("a", new Float32Array([1, 2]), [2]);
 * console.assert(m.names().includes("a") && m.getF32("a")[1] === 2);
 * ```
 */
export class TensorMap extends NativeHandle {
  /** What the handle is, for error messages. */
  protected readonly kind = "tensor map";

  /** Creates an empty map. */
  constructor() {
    const slot = pointerSlot();
    unwrap(native().l2d_tmap_create(slot), "Cannot create a tensor map");
    super(slotPointer(slot));
  }

  /** Releases the native handle (called once by close). */
  protected free(ptr: Deno.PointerValue): void {
    native().l2d_tmap_free(ptr);
  }

  /** Stores a copy of `t` under `name` (replacing any entry). */
  set(name: string, t: HostTensor): void {
    const expected = numel(t.shape) * DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new RangeError(
        `Cannot set tensor "${name}": ${t.dtype}[${t.shape}] needs ${expected} bytes, got ${t.data.byteLength}`,
      );
    }
    unwrap(
      native().l2d_tmap_set(
        this.handle(),
        cString(name),
        DTYPE_CODES[t.dtype],
        t.shape.length,
        new BigInt64Array(t.shape.map(BigInt)),
        t.data as Uint8Array<ArrayBuffer>,
        BigInt(t.data.byteLength),
      ),
      `Cannot set tensor "${name}"`,
    );
  }

  /** Stores float32 values with a shape. */
  setF32(name: string, values: Float32Array, shape: number[]): void {
    this.set(name, {
      dtype: "F32",
      shape,
      data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    });
  }

  /** Stores integers as I64. */
  setI64(name: string, values: ArrayLike<number>, shape: number[]): void {
    const big = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
    this.set(name, { dtype: "I64", shape, data: new Uint8Array(big.buffer) });
  }

  /** Fills `name` with Philox float32 values computed natively (fast for full-size weights). */
  setPhilox(name: string, shape: number[], fill: PhiloxFill): void {
    unwrap(
      native().l2d_tmap_set_philox(
        this.handle(),
        cString(name),
        shape.length,
        new BigInt64Array(shape.map(BigInt)),
        fill.kind === "weight" ? 0 : 1,
        fill.seed >>> 0,
        (fill.stream ?? 0) >>> 0,
        (fill.draw ?? 0) >>> 0,
      ),
      `Cannot fill tensor "${name}"`,
    );
  }

  /** True when `name` exists. */
  has(name: string): boolean {
    return this.names().includes(name);
  }

  /** dtype and shape of an entry. */
  info(name: string): { dtype: DType; shape: number[] } {
    const dtype = new Int32Array(1), ndim = new Int32Array(1), shape = new BigInt64Array(8);
    unwrap(
      native().l2d_tmap_info(this.handle(), cString(name), dtype, ndim, shape),
      `Cannot read tensor "${name}"`,
    );
    return { dtype: DTYPE_NAMES[dtype[0]!]!, shape: Array.from(shape.subarray(0, ndim[0]!), Number) };
  }

  /** A copy of an entry. */
  get(name: string): HostTensor {
    const { dtype, shape } = this.info(name);
    const data = new Uint8Array(numel(shape) * DTYPE_SIZE[dtype]);
    unwrap(
      native().l2d_tmap_get(this.handle(), cString(name), data, BigInt(data.byteLength)),
      `Cannot read tensor "${name}"`,
    );
    return { dtype, shape, data };
  }

  /** An entry as float32 (F32 entries only; use {@linkcode get} for others). */
  getF32(name: string): Float32Array {
    const t = this.get(name);
    if (t.dtype !== "F32") throw new TypeError(`Cannot read tensor "${name}" as F32: it is ${t.dtype}`);
    return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  }

  /** Removes an entry (no-op when missing). */
  delete(name: string): void {
    unwrap(native().l2d_tmap_remove(this.handle(), cString(name)), `Cannot remove tensor "${name}"`);
  }

  /** Entry names in sorted order. */
  names(): string[] {
    const ptr = this.handle();
    const count = new Int32Array(1);
    unwrap(native().l2d_tmap_count(ptr, count), "Cannot list tensors");
    const buf = new Uint8Array(4096);
    const out: string[] = [];
    for (let i = 0; i < count[0]!; i++) {
      unwrap(native().l2d_tmap_name(ptr, i, buf, BigInt(buf.byteLength)), "Cannot list tensors");
      out.push(new TextDecoder().decode(buf.subarray(0, buf.indexOf(0))));
    }
    return out;
  }
}

/** Options of {@linkcode Context.create}. */
export interface ContextOptions {
  /** CUDA storage precision. @default "fp16" */
  precision?: "fp16" | "fp32";
  /** CPU worker threads. @default all cores */
  threads?: number;
  /** CUDA device ordinal. @default 0 */
  device?: number;
}

/** Work a context handed to its device (`l2d_context_stats` -> `launches`; cumulative counts). */
export interface LaunchCounts {
  /** CUDA kernel launches issued eagerly (one per launch site run). */
  kernels: number;
  /** cuBLASLt / cuDNN calls (each launches one or more kernels). */
  vendor_calls: number;
  /** CUDA-graph launches. */
  graphs: number;
  /** Kernel nodes inside the graphs launched. */
  graph_kernels: number;
  /** Launches recorded into graphs while capturing (not run then). */
  captured_kernels: number;
  /** CPU backend: top-level thread-pool loops, its stand-in for kernel launches. */
  cpu_loops: number;
  /** Host waits for the device (stream / event synchronisations). */
  syncs: number;
  /**
   * Memory copies and fills issued eagerly, counted apart from the launches (CUDA: cudaMemcpy and
   * cudaMemset calls; CPU: copies between caller and backend memory). Absent from older libraries.
   */
  copies?: number;
  /** Memcpy / memset nodes inside the CUDA graphs launched. Absent from older libraries. */
  graph_copies?: number;
  /** Copies recorded into graphs while capturing (not run then). Absent from older libraries. */
  captured_copies?: number;
}

/** `l2d_context_stats` (cuda/include/l2d.h documents every member). */
export interface ContextStats {
  /** "cpu" or "cuda". */
  backend: string;
  /** Device bytes allocated now. */
  bytes_in_use: number;
  /**
   * Device bytes that captured CUDA graphs hold between replays (their intermediates, no tensor
   * holds them; not in `bytes_in_use`). 0 on the CPU; absent from older libraries.
   */
  graph_reserved_bytes?: number;
  /** High-water mark of `bytes_in_use` + `graph_reserved_bytes`. */
  peak_bytes: number;
  /** Dense-kernel paths and counters (CUDA), null on the CPU; absent from older libraries. */
  kernels?: unknown;
  /** Cumulative launch counts (absent from older libraries). */
  launches?: LaunchCounts;
  /** Host milliseconds blocked waiting for the device, all calls. */
  device_wait_ms?: number;
  /** `l2d_stream_push` totals: host time = wall_ms - device_wait_ms. */
  push?: { calls: number; wall_ms: number; device_wait_ms: number; thread_cpu_ms: number };
  /** Whether stage timing is on ({@linkcode Context.profileStages}). */
  stage_profiling?: boolean;
  /** Summed milliseconds per stream stage ("encode", "depth", "unet", "decode") while profiling. */
  stages_ms?: Record<string, { calls: number; ms: number }>;
}

/**
 * A backend ("cpu" or "cuda") with its device memory.
 *
 * @example
 * ```ts
 * import { Context } from "./native.ts";
 * using ctx = Context.create("cpu", { threads: 1 });
 * console.assert(ctx.stats().backend === "cpu");
 * ```
 */
export class Context extends NativeHandle {
  /** What the handle is, for error messages. */
  protected readonly kind = "context";
  /** The backend this context runs on. */
  readonly backend: BackendName;

  private constructor(ptr: Deno.PointerValue, backend: BackendName) {
    super(ptr);
    this.backend = backend;
  }

  /** Creates a context; throws EngineError("UNSUPPORTED") when the backend is not available. */
  static create(backend: BackendName, options: ContextOptions = {}): Context {
    if (backend !== "cpu" && backend !== "cuda") {
      throw new TypeError(`Cannot create a context: unknown backend "${backend}" (expected "cpu" or "cuda")`);
    }
    const slot = pointerSlot();
    unwrap(
      native().l2d_context_create(cString(backend), cString(JSON.stringify(options)), slot),
      `Cannot create a ${backend} context`,
    );
    return new Context(slotPointer(slot), backend);
  }

  /** Releases the native handle (called once by close). */
  protected free(ptr: Deno.PointerValue): void {
    native().l2d_context_free(ptr);
  }

  /** Statistics of the backend: memory, launches, push times, stage times (see {@linkcode ContextStats}). */
  stats(): ContextStats {
    const out = pointerSlot();
    unwrap(native().l2d_context_stats(this.handle(), out), "Cannot read context statistics");
    return JSON.parse(readCString(slotPointer(out)));
  }

  /**
   * Turns the per-stage timing of stream pushes on or off (off by default: no per-frame cost). The
   * sums appear in `stats().stages_ms`; CUDA times the device between two events per stage.
   */
  profileStages(on: boolean): void {
    unwrap(native().l2d_context_profile(this.handle(), on ? 1 : 0), "Cannot set stage profiling");
  }

  /** @internal the raw handle for Model.create. */
  rawHandle(): Deno.PointerValue {
    return this.handle();
  }
}

/**
 * A network ("unet", "taesd", "clip_text", "midas", "ops", ...) with its weights on a context.
 *
 * @example
 * ```ts
 * import { Context, Model, TensorMap } from "./native.ts";
 * using ctx = Context.create("cpu");
 * using model = await Model.create(ctx, "ops", {});
 * using io = new TensorMap();
 * io.setF32("x", new Float32Array([-1, 2]), [2]);
 * io.setF32("params", new Float32Array([1, 0, 0]), [3]); // Unary::Relu
 * await model.run("unary", io);
 * console.assert(io.getF32("y")[0] === 0);
 * ```
 */
export class Model extends NativeHandle {
  /** What the handle is, for error messages. */
  protected readonly kind: string;

  private constructor(ptr: Deno.PointerValue, kind: string) {
    super(ptr);
    this.kind = `${kind} model`;
  }

  /** Builds a model; `weights` is only read and may be closed afterwards. */
  static async create(ctx: Context, kind: string, config: unknown, weights?: TensorMap): Promise<Model> {
    const ctxPtr = ctx.rawHandle();
    const slot = pointerSlot();
    const kindStr = cString(kind), configStr = cString(JSON.stringify(config ?? {}));
    const status = await native().l2d_model_create(
      ctxPtr,
      kindStr,
      configStr,
      weights?.unsafeHandle ?? null,
      slot,
    );
    unwrap(status, `Cannot create the ${kind} model`, () => native().l2d_context_last_error(ctxPtr));
    return new Model(slotPointer(slot), kind);
  }

  /** Releases the native handle (called once by close). */
  protected free(ptr: Deno.PointerValue): void {
    native().l2d_model_free(ptr);
  }

  /** Runs a stateless method: inputs are read from `io`, outputs written into it. */
  run(method: string, io: TensorMap): Promise<void> {
    return this.exclusive(async (ptr) => {
      const methodStr = cString(method);
      const status = await native().l2d_model_run(ptr, methodStr, io.unsafeHandle);
      unwrap(status, `Cannot run ${this.kind} method "${method}"`, () => native().l2d_model_last_error(ptr));
    });
  }

  /** Creates per-stream state of this model. */
  createSession(config: unknown): Session {
    const ptr = this.handle();
    const slot = pointerSlot();
    unwrap(
      native().l2d_session_create(ptr, cString(JSON.stringify(config ?? {})), slot),
      `Cannot create a ${this.kind} session`,
    );
    return new Session(slotPointer(slot), this.kind);
  }
}

/** Per-stream state of a model (KV caches, buffers); see {@linkcode Model.createSession}. */
export class Session extends NativeHandle {
  /** What the handle is, for error messages. */
  protected readonly kind: string;

  /** @internal created by Model.createSession */
  constructor(ptr: Deno.PointerValue, modelKind: string) {
    super(ptr);
    this.kind = `${modelKind} session`;
  }

  /** Releases the native handle (called once by close). */
  protected free(ptr: Deno.PointerValue): void {
    native().l2d_session_free(ptr);
  }

  /** Runs a stateful method against `io`. */
  run(method: string, io: TensorMap): Promise<void> {
    return this.exclusive(async (ptr) => {
      const methodStr = cString(method);
      const status = await native().l2d_session_run(ptr, methodStr, io.unsafeHandle);
      unwrap(
        status,
        `Cannot run ${this.kind} method "${method}"`,
        () => native().l2d_session_last_error(ptr),
      );
    });
  }
}

/** Geometry of a frame given to {@linkcode NativeStream.pushFrame}. */
export interface FrameGeometry {
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** 3 = RGB, 4 = RGBA. */
  channels: 3 | 4;
}

/**
 * A native live stream (`l2d_stream_create`): the Live2Diff streaming pipeline over a "unet", a
 * "taesd" and a "midas" model of one context. {@linkcode pushFrame} is the per-frame hot path (one
 * FFI call); {@linkcode Session.run} gives the debug/golden methods ("warmup", "push", ...).
 */
export class NativeStream extends Session {
  /** Stream width in pixels. */
  readonly width: number;
  /** Stream height in pixels. */
  readonly height: number;

  private constructor(ptr: Deno.PointerValue, width: number, height: number) {
    super(ptr, "stream");
    this.width = width;
    this.height = height;
  }

  /** Creates a stream; `config` is the JSON object described in `l2d.h` (l2d_stream_create). */
  static create(
    unet: Model,
    vae: Model,
    depth: Model,
    config: { width: number; height: number; [key: string]: unknown },
  ): NativeStream {
    const slot = pointerSlot();
    const u = unet.unsafeHandle, v = vae.unsafeHandle, d = depth.unsafeHandle;
    if (u === null || v === null || d === null) {
      throw new EngineError("CLOSED", "Cannot create a stream: a model is closed");
    }
    unwrap(
      native().l2d_stream_create(u, v, d, cString(JSON.stringify(config)), slot),
      "Cannot create a stream",
      () => native().l2d_model_last_error(u),
    );
    return new NativeStream(slotPointer(slot), config.width, config.height);
  }

  /**
   * Pushes one frame (uint8, `height * width * channels` bytes, any size) and writes the output
   * frame (RGB, stream size) into `out` when one is ready. Resolves to whether `out` was written.
   */
  pushFrame(frame: Uint8Array, geometry: FrameGeometry, out: Uint8Array): Promise<boolean> {
    return this.exclusive(async (ptr) => {
      const ready = new Int32Array(1);
      const status = await native().l2d_stream_push(
        ptr,
        frame as Uint8Array<ArrayBuffer>,
        BigInt(frame.byteLength),
        geometry.width,
        geometry.height,
        geometry.channels,
        out as Uint8Array<ArrayBuffer>,
        BigInt(out.byteLength),
        ready,
      );
      unwrap(status, "Cannot process the frame", () => native().l2d_session_last_error(ptr));
      return ready[0] === 1;
    });
  }
}
