/**
 * The engine file (`.l2de`): every weight, config and tokenizer a Live2Diff pipeline needs, built once
 * and loaded in seconds. Unlike the original's TensorRT engines it bakes in neither the resolution nor
 * the number of denoising steps: one file serves every size and step count.
 *
 * Layout (all integers little-endian):
 * ```
 * 0   "L2DENGN\0"            8-byte magic
 * 8   u32 format version     (ENGINE_FORMAT_VERSION)
 * 12  u32 header length N    (UTF-8 JSON, padded with spaces so the data area starts 256-aligned)
 * 16  header JSON            {@linkcode EngineHeader}
 * D   tensor data            D = 16 + N (a multiple of 256); every tensor at D + offset, offset % 256 == 0,
 *                            gaps filled with zero bytes
 * E   trailer (64 bytes)     "L2DTRLR\0", u64 data length, sha256(header JSON bytes), 16 zero bytes
 * ```
 * Integrity is a two-level hash: the header lists the sha256 of every tensor's bytes and the trailer holds
 * the sha256 of the header. Opening checks the header hash and every bound (cheap), each `read` checks the
 * tensor it returns, and `verify: true` checks every tensor up front. So a corrupt byte anywhere is found
 * before it is used, without re-hashing a multi-GB file on every start.
 *
 * @example
 * ```ts ignore
 * import { openEngine } from "./format.ts";
 * using engine = await openEngine("models/engines/disney.l2de", { target: "cpu" });
 * const w = await engine.read("unet.conv_in.weight");
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type DType, DTYPE_SIZE, type HostTensor, numel } from "../ffi/host_tensor.ts";
import type { TensorMap } from "../ffi/native.ts";
import { headerSchemaProblem, isValidTensorName } from "./header_schema.ts";

/** First 8 bytes of every engine file. */
export const ENGINE_MAGIC = "L2DENGN\0";
/** Last 64 bytes start with this. */
export const TRAILER_MAGIC = "L2DTRLR\0";
/** Version this code writes and the only one it reads. Bump on any incompatible change. */
export const ENGINE_FORMAT_VERSION = 1;
/** Alignment of the data area and of every tensor (mmap + direct device upload). */
export const ENGINE_ALIGN = 256;
/** Size of the fixed prefix (magic, version, header length). */
const PREFIX_BYTES = 16;
/** Size of the trailer. */
const TRAILER_BYTES = 64;
/** Real headers are ~1 MB for SD1.5 (one entry per tensor); anything beyond this is hostile. */
export const MAX_ENGINE_HEADER_BYTES = 64 * 1024 * 1024;
/** Dtypes an engine may contain (weights F32/F16, tokenizer blobs U8, integer buffers I64). */
const ENGINE_DTYPES: readonly DType[] = ["F32", "F16", "BF16", "I64", "I32", "U8", "BOOL"];

/** A malformed, truncated, corrupt, wrong-version or wrong-target engine file. */
export class EngineFileError extends Error {
  override name = "EngineFileError";
}

/** Where an engine runs: `cpu` (float32) or a CUDA architecture `sm_XY` (float16 weights). */
export type EngineTarget = "cpu" | `sm_${number}`;

/** Checks a target string; throws a TypeError naming the accepted forms. */
export function parseTarget(target: string): EngineTarget {
  if (target === "cpu" || /^sm_[1-9][0-9]{1,2}a?$/.test(target)) return target as EngineTarget;
  throw new TypeError(`Unknown engine target "${target}": expected "cpu" or a CUDA architecture such as sm_89, sm_90`);
}

/**
 * Refuses an engine built for another kind of machine than the backend loading it: a CUDA (`sm_XY`)
 * engine on the CPU backend, or a `cpu` engine on CUDA. Its weights are stored for that target (fp16
 * for GPUs, fp32 for the CPU), so the file is not for this machine: an {@linkcode EngineFileError}
 * that names both targets and how to get a matching engine.
 */
export function checkEngineTarget(path: string, target: EngineTarget, backend: "cpu" | "cuda"): void {
  if (backend === "cpu" && target !== "cpu") {
    throw new EngineFileError(
      `Engine "${path}" was built for target "${target}" (CUDA) but is being loaded on the CPU backend ` +
        `(target "cpu"): rebuild it with --target cpu, or load it with device "cuda" on a GPU of ${target} or newer`,
    );
  }
  if (backend === "cuda" && !target.startsWith("sm_")) {
    throw new EngineFileError(
      `Engine "${path}" was built for target "${target}" but is being loaded on CUDA (targets sm_XY): ` +
        `rebuild it with --target set to the GPU's architecture (e.g. sm_89, sm_90), or load it with device "cpu"`,
    );
  }
}

/** Storage dtype of floating-point weights for a target: fp16 on GPUs, fp32 on the CPU. */
export function weightDtype(target: EngineTarget): "F32" | "F16" {
  return target === "cpu" ? "F32" : "F16";
}

/** One input file the engine was built from. */
export interface ProvenanceEntry {
  /** File name (no directories: engines are shared between machines). */
  file: string;
  /** What the file provided: "unet", "text_encoder", "motion_module", "dreambooth", "lora", ... */
  role: string;
  /** Size in bytes. */
  bytes: number;
  /** Hex sha256 of the file's bytes. */
  sha256: string;
  /** LoRA only: the fusing scale. */
  lora_scale?: number;
  /** LoRA only: how it was fused ("live2diff", "kohya" or "diffusers"). */
  lora_convention?: string;
}

/** Settings that belong to a style (a Live2Diff config). */
export interface EngineStyle {
  /** `third_party_dict.clip_skip` (Live2Diff default 1 = penultimate layer). */
  clip_skip: number;
  /** Prompt template with one `{}` (or null). */
  prompt_template: string | null;
  /** Default t_index_list (indexes into the LCM timesteps); only a default, not baked in. */
  t_index_list: number[];
  /** Default number of LCM inference steps the t_index_list refers to. */
  num_inference_steps: number;
}

/** One tensor's entry in the header. */
export interface EngineTensorEntry {
  /** Namespaced name: `unet.<key>`, `text_encoder.<key>`, `taesd.<key>`, `midas.<key>`, `tokenizer.<file>`. */
  name: string;
  dtype: DType;
  shape: number[];
  /** Byte offset from the start of the data area (multiple of {@linkcode ENGINE_ALIGN}). */
  offset: number;
  /** Byte length: numel(shape) * size(dtype). */
  nbytes: number;
  /** Hex sha256 of the tensor's bytes. */
  sha256: string;
}

/** The JSON header. `components` holds the configs each native model is created with. */
export interface EngineHeader {
  format_version: number;
  target: EngineTarget;
  /** ISO timestamp of the build. */
  created: string;
  /** Tool that wrote it. */
  generator: string;
  /** Per component: its config (diffusers/HF config.json contents plus Live2Diff kwargs). */
  components: Record<string, Record<string, unknown>>;
  style: EngineStyle;
  provenance: ProvenanceEntry[];
  tensors: EngineTensorEntry[];
}

/** Everything of the header the caller provides; tensors and bookkeeping are filled by the writer. */
export type EngineHeaderInit = Omit<EngineHeader, "format_version" | "tensors" | "created" | "generator"> & {
  created?: string;
  generator?: string;
};

/** What the writer needs to know about a tensor before its data exists. */
export interface TensorPlan {
  name: string;
  dtype: DType;
  shape: number[];
}

const HASH_PLACEHOLDER = "0".repeat(64);
const align = (n: number) => Math.ceil(n / ENGINE_ALIGN) * ENGINE_ALIGN;

/** Builds the header bytes (prefix + JSON, padded so the data area is aligned). */
function encodeHeader(header: EngineHeader): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const total = align(PREFIX_BYTES + json.byteLength);
  const out = new Uint8Array(total).fill(0x20);
  out.set(new TextEncoder().encode(ENGINE_MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, ENGINE_FORMAT_VERSION, true);
  view.setUint32(12, total - PREFIX_BYTES, true);
  out.set(json, PREFIX_BYTES);
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) done += await file.write(bytes.subarray(done));
}

/**
 * Streams an engine to disk: tensors are written one at a time in plan order, so memory stays at one
 * tensor. The file is written as `<path>.partial` and renamed on {@linkcode finish}, so an interrupted
 * build never leaves a file that looks valid.
 */
export class EngineWriter {
  #file: Deno.FsFile;
  #header: EngineHeader;
  #next = 0;
  #dataStart: number;
  #written = 0;

  private constructor(readonly path: string, file: Deno.FsFile, header: EngineHeader, dataStart: number) {
    this.#file = file;
    this.#header = header;
    this.#dataStart = dataStart;
  }

  /** Opens `<path>.partial` and lays out every tensor of `plans` (offsets are final from here on). */
  static async create(path: string, init: EngineHeaderInit, plans: readonly TensorPlan[]): Promise<EngineWriter> {
    const seen = new Set<string>();
    let offset = 0;
    const tensors: EngineTensorEntry[] = plans.map((p) => {
      if (seen.has(p.name)) throw new EngineFileError(`Cannot write engine: tensor "${p.name}" is listed twice`);
      seen.add(p.name);
      const nbytes = numel(p.shape) * DTYPE_SIZE[p.dtype];
      const entry = { name: p.name, dtype: p.dtype, shape: [...p.shape], offset, nbytes, sha256: HASH_PLACEHOLDER };
      offset = align(offset + nbytes);
      return entry;
    });
    const header: EngineHeader = {
      format_version: ENGINE_FORMAT_VERSION,
      target: parseTarget(init.target),
      created: init.created ?? new Date().toISOString(),
      generator: init.generator ?? "live2diff engines/format.ts",
      components: init.components,
      style: init.style,
      provenance: init.provenance,
      tensors,
    };
    // Hashes are fixed-length hex, so the header's length is final now: write it once with placeholders
    // (reserving the space) and overwrite it in finish().
    const bytes = encodeHeader(header);
    const file = await Deno.open(`${path}.partial`, { write: true, create: true, truncate: true });
    try {
      await writeAll(file, bytes);
    } catch (e) {
      file.close();
      throw e;
    }
    return new EngineWriter(path, file, header, bytes.byteLength);
  }

  /** Name of the tensor {@linkcode write} expects next, or undefined when all are written. */
  get nextName(): string | undefined {
    return this.#header.tensors[this.#next]?.name;
  }

  /** Bytes of tensor data written so far. */
  get bytesWritten(): number {
    return this.#written;
  }

  /** Writes the next tensor's bytes (must be `name`, with exactly the planned byte length). */
  async write(name: string, data: Uint8Array): Promise<void> {
    const entry = this.#header.tensors[this.#next];
    if (!entry || entry.name !== name) {
      throw new EngineFileError(`Cannot write tensor "${name}": expected "${entry?.name ?? "(none left)"}" next`);
    }
    if (data.byteLength !== entry.nbytes) {
      throw new EngineFileError(
        `Cannot write tensor "${name}": ${entry.dtype}[${entry.shape}] needs ${entry.nbytes} bytes, got ${data.byteLength}`,
      );
    }
    const hash = createHash("sha256");
    hash.update(data);
    entry.sha256 = hash.digest("hex");
    await writeAll(this.#file, data);
    const pad = align(entry.nbytes) - entry.nbytes;
    if (pad) await writeAll(this.#file, new Uint8Array(pad));
    this.#written += entry.nbytes + pad;
    this.#next++;
  }

  /** Writes the final header and trailer, closes and renames the file into place. Returns the header. */
  async finish(): Promise<EngineHeader> {
    if (this.#next !== this.#header.tensors.length) {
      throw new EngineFileError(`Cannot finish engine: tensor "${this.nextName}" was never written`);
    }
    const bytes = encodeHeader(this.#header);
    if (bytes.byteLength !== this.#dataStart) throw new Error("engine header changed size while writing");
    const json = bytes.subarray(PREFIX_BYTES);
    const trailer = new Uint8Array(TRAILER_BYTES);
    trailer.set(new TextEncoder().encode(TRAILER_MAGIC), 0);
    new DataView(trailer.buffer).setBigUint64(8, BigInt(this.#written), true);
    trailer.set(sha256Bytes(json), 16);
    await writeAll(this.#file, trailer);
    await this.#file.seek(0, Deno.SeekMode.Start);
    await writeAll(this.#file, bytes);
    this.#file.close();
    await Deno.rename(`${this.path}.partial`, this.path);
    return this.#header;
  }

  /** Abandons the build: closes and removes the partial file. */
  async abort(): Promise<void> {
    try {
      this.#file.close();
    } catch { /* already closed */ }
    await Deno.remove(`${this.path}.partial`).catch(() => {});
  }
}

function sha256Bytes(data: Uint8Array): Uint8Array {
  const h = createHash("sha256");
  h.update(data);
  return new Uint8Array(h.digest());
}

/** Options of {@linkcode openEngine}. */
export interface OpenEngineOptions {
  /** Refuse the file unless it was built for this target. */
  target?: string;
  /** Hash every tensor now (reads the whole file) instead of on each read. @default false */
  verify?: boolean;
  /** Check each tensor's sha256 when it is read. @default true */
  checkTensors?: boolean;
}

/** An opened engine file: validated header, configs, and tensor reads on demand. */
export class EngineFile implements Disposable {
  #file: Deno.FsFile | null;
  #entries: Map<string, EngineTensorEntry>;
  #queue: Promise<unknown> = Promise.resolve();

  /** @internal use {@linkcode openEngine}. */
  constructor(
    readonly path: string,
    file: Deno.FsFile,
    readonly header: EngineHeader,
    readonly dataStart: number,
    readonly checkTensors: boolean,
  ) {
    this.#file = file;
    this.#entries = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** The target the engine was built for. */
  get target(): EngineTarget {
    return this.header.target;
  }

  /** Tensor names in file order. */
  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  /** The config of a component (`unet`, `text_encoder`, `tokenizer`, `taesd`, `midas`, `scheduler`). */
  config(component: string): Record<string, unknown> {
    const c = this.header.components[component];
    if (!c) throw new EngineFileError(`Engine "${this.path}" has no component "${component}"`);
    return c;
  }

  /** Whether `name` is a tensor of the engine. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The header entry of `name`. */
  entry(name: string): EngineTensorEntry {
    const e = this.#entries.get(name);
    if (!e) throw new EngineFileError(`Engine "${this.path}" has no tensor "${name}"`);
    return e;
  }

  /** Absolute file offset of a tensor (for mmap / direct upload by native code). */
  fileOffset(name: string): number {
    return this.dataStart + this.entry(name).offset;
  }

  /** Reads one tensor, checking its sha256 unless disabled. */
  read(name: string): Promise<HostTensor> {
    return this.#read(name, this.checkTensors);
  }

  #read(name: string, check: boolean): Promise<HostTensor> {
    const e = this.entry(name);
    const run = this.#queue.then(async () => {
      const file = this.#file;
      if (!file) throw new EngineFileError(`Cannot read "${name}": engine "${this.path}" is closed`);
      const data = new Uint8Array(e.nbytes);
      await file.seek(this.dataStart + e.offset, Deno.SeekMode.Start);
      for (let done = 0; done < data.byteLength;) {
        const n = await file.read(data.subarray(done));
        if (!n) throw new EngineFileError(`Engine "${this.path}" is truncated inside tensor "${name}"`);
        done += n;
      }
      if (check) {
        const h = createHash("sha256");
        h.update(data);
        if (h.digest("hex") !== e.sha256) {
          throw new EngineFileError(
            `Engine "${this.path}" is corrupt: tensor "${name}" does not match its checksum; rebuild the engine`,
          );
        }
      }
      return { dtype: e.dtype, shape: [...e.shape], data };
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Hashes every tensor; throws {@linkcode EngineFileError} on the first mismatch. */
  async verify(onProgress?: (done: number, total: number) => void): Promise<void> {
    const total = this.header.tensors.reduce((n, t) => n + t.nbytes, 0);
    let done = 0;
    for (const t of this.header.tensors) {
      await this.#read(t.name, true);
      done += t.nbytes;
      onProgress?.(done, total);
    }
  }

  /**
   * Copies every tensor whose name starts with `prefix` into `map`, under the name without the prefix
   * (`loadInto(map, "unet.")` gives the UNet its own key names). Returns the keys added.
   */
  async loadInto(map: TensorMap, prefix: string): Promise<string[]> {
    const added: string[] = [];
    for (const t of this.header.tensors) {
      if (!t.name.startsWith(prefix)) continue;
      const key = t.name.slice(prefix.length);
      map.set(key, await this.read(t.name));
      added.push(key);
    }
    return added;
  }

  /** Text of a `U8` blob tensor (tokenizer files). */
  async text(name: string): Promise<string> {
    return new TextDecoder().decode((await this.read(name)).data);
  }

  /** Closes the file (idempotent). */
  close(): void {
    const f = this.#file;
    this.#file = null;
    f?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens and validates an engine file: magic, version, header bounds and hash, target, every tensor's
 * dtype/shape/offset/size, and the file size. Any problem is an {@linkcode EngineFileError} that says
 * what is wrong and what to do.
 */
export async function openEngine(path: string, options: OpenEngineOptions = {}): Promise<EngineFile> {
  let file: Deno.FsFile;
  try {
    // Checked BEFORE opening: opening a FIFO blocks until a writer appears (forever).
    if (!(await Deno.stat(path)).isFile) throw new EngineFileError(`Cannot open engine "${path}": not a regular file`);
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof EngineFileError) throw e;
    throw new EngineFileError(`Cannot open engine "${path}": ${(e as Error).message}`, { cause: e });
  }
  try {
    const engine = await validate(path, file, options);
    if (options.verify) await engine.verify();
    return engine;
  } catch (e) {
    file.close();
    throw e;
  }
}

async function readExact(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  for (let done = 0; done < length;) {
    const n = await file.read(out.subarray(done));
    if (!n) throw new EngineFileError(`unexpected end of file at ${offset + done}`);
    done += n;
  }
  return out;
}

async function validate(path: string, file: Deno.FsFile, options: OpenEngineOptions): Promise<EngineFile> {
  const fail = (why: string) => new EngineFileError(`Engine "${path}" ${why}`);
  const stat = await file.stat();
  if (!stat.isFile) throw fail("is not a regular file");
  const size = stat.size;
  if (size < PREFIX_BYTES) throw fail(`is truncated (${size} bytes): not an engine file or an interrupted copy`);
  const prefix = await readExact(file, 0, PREFIX_BYTES);
  if (new TextDecoder().decode(prefix.subarray(0, 8)) !== ENGINE_MAGIC) {
    throw fail(`is not a live2diff engine (bad magic); build one with "deno task build-engine"`);
  }
  const view = new DataView(prefix.buffer);
  const version = view.getUint32(8, true);
  if (version !== ENGINE_FORMAT_VERSION) {
    throw fail(
      `has format version ${version}, this build reads version ${ENGINE_FORMAT_VERSION}; rebuild it with this version`,
    );
  }
  const headerLen = view.getUint32(12, true);
  if (headerLen > MAX_ENGINE_HEADER_BYTES) throw fail(`declares an absurd header of ${headerLen} bytes`);
  const dataStart = PREFIX_BYTES + headerLen;
  if (dataStart % ENGINE_ALIGN !== 0) throw fail(`has a misaligned data area (header length ${headerLen})`);
  if (size < dataStart + TRAILER_BYTES) {
    throw fail(`is truncated: ${size} bytes, the header alone needs ${dataStart + TRAILER_BYTES}`);
  }
  const json = await readExact(file, PREFIX_BYTES, headerLen);
  const trailer = await readExact(file, size - TRAILER_BYTES, TRAILER_BYTES);
  if (new TextDecoder().decode(trailer.subarray(0, 8)) !== TRAILER_MAGIC) {
    throw fail(`is truncated or was not finished (no trailer at the end of the file)`);
  }
  const dataLength = Number(new DataView(trailer.buffer).getBigUint64(8, true));
  if (dataStart + dataLength + TRAILER_BYTES !== size) {
    throw fail(`is truncated or has extra bytes: ${size} bytes, expected ${dataStart + dataLength + TRAILER_BYTES}`);
  }
  const want = trailer.subarray(16, 48);
  const got = sha256Bytes(json);
  if (!want.every((b, i) => b === got[i])) throw fail(`is corrupt: its header does not match its checksum`);
  let header: EngineHeader;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw fail(`has an unreadable header: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || !Array.isArray(header.tensors)) {
    throw fail(`has a header without a tensor list`);
  }
  if (header.format_version !== version) {
    throw fail(`has inconsistent versions (prefix ${version}, header ${header.format_version})`);
  }
  const problem = headerSchemaProblem(header as unknown as Record<string, unknown>);
  if (problem) throw fail(`has a header with ${problem}; rebuild the engine`);
  try {
    parseTarget(header.target);
  } catch {
    throw fail(`has an unknown target ${JSON.stringify(header.target.slice(0, 80))}`);
  }
  if (options.target !== undefined && header.target !== parseTarget(options.target)) {
    throw fail(
      `was built for target "${header.target}" but "${options.target}" was requested; ` +
        `rebuild it with --target ${options.target}`,
    );
  }
  const names = new Set<string>();
  let end = 0;
  for (const t of header.tensors) {
    if (typeof t !== "object" || t === null) throw fail(`has a tensor entry that is not an object`);
    const what = `tensor ${JSON.stringify(typeof t.name === "string" ? t.name.slice(0, 200) : t.name)}`;
    if (!isValidTensorName(t.name)) {
      throw fail(`has ${what}, not a valid name (empty, too long, NUL or unpaired surrogate)`);
    }
    if (names.has(t.name)) throw fail(`has a duplicate ${what}`);
    names.add(t.name);
    if (!ENGINE_DTYPES.includes(t.dtype)) throw fail(`has ${what} with unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.length > 8 || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail(`has ${what} with an invalid shape`);
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(n) || n * DTYPE_SIZE[t.dtype] !== t.nbytes) {
      throw fail(`has ${what} whose size does not match its shape`);
    }
    if (!Number.isSafeInteger(t.offset) || t.offset % ENGINE_ALIGN !== 0 || t.offset < end) {
      throw fail(`has ${what} at a misaligned or overlapping offset`);
    }
    end = t.offset + t.nbytes;
    if (end > dataLength) throw fail(`is truncated: ${what} ends past the data area`);
    if (typeof t.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(t.sha256)) throw fail(`has ${what} without a checksum`);
  }
  return new EngineFile(path, file, header, dataStart, options.checkTensors ?? true);
}
