/**
 * safetensors reader and writer. Only the header is read eagerly; every entry is validated
 * up front (dtype, shape, offsets) so that a hostile header cannot cause huge allocations or
 * out-of-bounds reads later.
 *
 * @example
 * ```ts ignore
 * import { openSafetensors } from "./safetensors.ts";
 * using f = await openSafetensors("model.safetensors");
 * const w = await f.read(f.names[0]!);
 * ```
 *
 * @module
 */
import { type DType, DTYPE_SIZE, type HostTensor } from "../host_tensor.ts";
import { CheckpointError } from "./errors.ts";
import { RandomAccessFile } from "./random_access.ts";
import type { CheckpointFile, TensorInfo } from "./types.ts";

/**
 * Largest header we accept. Real headers are ~100-150 bytes per tensor (SD1.5: ~1,100 tensors in
 * ~150 KB; the largest single files hold a few thousand tensors), so 16 MiB admits ~100,000 tensors
 * while bounding what JSON.parse may allocate.
 */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** Most dimensions of a tensor (torch's own limit); also the longest array a header may hold. */
export const MAX_RANK = 64;

/** Where one tensor lives, relative to the start of the data area. */
export interface SafetensorsEntry extends TensorInfo {
  /** First byte (relative to the end of the header). */
  begin: number;
  /** One past the last byte. */
  end: number;
}

/** Byte source of an opened file (disk or memory). */
interface ByteSource {
  readAt(offset: number, length: number): Promise<Uint8Array>;
  close(): void;
  readonly closed: boolean;
}

/** An opened safetensors file (see {@linkcode openSafetensors}). */
export class SafetensorsFile implements CheckpointFile {
  readonly format = "safetensors";
  readonly names: readonly string[];
  #entries: Map<string, SafetensorsEntry>;

  /** @internal use {@linkcode openSafetensors} or {@linkcode parseSafetensorsBytes}. */
  constructor(
    readonly path: string,
    private readonly source: ByteSource,
    private readonly dataStart: number,
    entries: Map<string, SafetensorsEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.#entries = entries;
    this.names = Object.freeze([...entries.keys()]);
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** Dtype, shape and byte range of `name`. */
  info(name: string): SafetensorsEntry {
    const e = this.#entries.get(name);
    if (!e) throw new CheckpointError(`Checkpoint "${this.path}" has no tensor "${name}"`);
    return { ...e, shape: [...e.shape] };
  }

  async read(name: string): Promise<HostTensor> {
    const e = this.info(name);
    if (this.source.closed) {
      throw new CheckpointError(`Cannot read "${name}": checkpoint "${this.path}" is closed`);
    }
    const data = await this.source.readAt(this.dataStart + e.begin, e.end - e.begin);
    return { dtype: e.dtype, shape: e.shape, data };
  }

  close(): void {
    this.source.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens a safetensors file, reading and validating only its header. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const file = await RandomAccessFile.open(path);
  try {
    if (file.size < 8) {
      throw new CheckpointError(
        `Checkpoint "${path}" is truncated: ${file.size} bytes, no safetensors header`,
      );
    }
    const headerLength = readHeaderLength(await file.readAt(0, 8), file.size, path);
    const header = await file.readAt(8, headerLength);
    const dataStart = 8 + headerLength;
    const { entries, metadata } = parseSafetensorsHeader(header, file.size - dataStart, path);
    return new SafetensorsFile(path, file, dataStart, entries, metadata);
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Parses a whole safetensors file held in memory (reads return copies). */
export function parseSafetensorsBytes(bytes: Uint8Array, label = "<memory>"): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new CheckpointError(
      `Checkpoint "${label}" is truncated: ${bytes.byteLength} bytes, no safetensors header`,
    );
  }
  const headerLength = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength, label);
  const dataStart = 8 + headerLength;
  const { entries, metadata } = parseSafetensorsHeader(
    bytes.subarray(8, dataStart),
    bytes.byteLength - dataStart,
    label,
  );
  let closed = false;
  const source: ByteSource = {
    readAt: (offset, length) => {
      if (offset + length > bytes.byteLength) {
        return Promise.reject(
          new CheckpointError(`Checkpoint "${label}" is truncated at ${offset + length}`),
        );
      }
      return Promise.resolve(bytes.slice(offset, offset + length));
    },
    close: () => {
      closed = true;
    },
    get closed() {
      return closed;
    },
  };
  return new SafetensorsFile(label, source, dataStart, entries, metadata);
}

/** Decodes the u64 header length and checks it against the file size and {@linkcode MAX_HEADER_BYTES}. */
function readHeaderLength(first8: Uint8Array, fileSize: number, path: string): number {
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      `Checkpoint "${path}" declares a safetensors header of ${n} bytes (limit ${MAX_HEADER_BYTES})`,
    );
  }
  if (8n + n > BigInt(fileSize)) {
    throw new CheckpointError(
      `Checkpoint "${path}" is truncated: its ${n}-byte header does not fit in ${fileSize} bytes`,
    );
  }
  if (n < 2n) throw new CheckpointError(`Checkpoint "${path}" has an empty safetensors header`);
  return Number(n);
}

const DTYPES = new Set<string>(Object.keys(DTYPE_SIZE));

/** Validates a parsed header against the size of the data area; exported for tests and tools. */
export function parseSafetensorsHeader(
  header: Uint8Array,
  dataLength: number,
  path: string,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  checkHeaderShape(header, path);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(header));
  } catch (e) {
    throw new CheckpointError(
      `Checkpoint "${path}" has a safetensors header that is not valid UTF-8 JSON: ${(e as Error).message}`,
    );
  }
  if (!isPlainObject(json)) {
    throw new CheckpointError(`Checkpoint "${path}" has a safetensors header that is not a JSON object`);
  }
  const metadata: Record<string, string> = {};
  const list: [string, SafetensorsEntry][] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isPlainObject(value)) {
        throw new CheckpointError(`Checkpoint "${path}" has a "__metadata__" that is not an object`);
      }
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== "string") {
          throw new CheckpointError(`Checkpoint "${path}" has non-string metadata "${k}"`);
        }
        metadata[k] = v;
      }
      continue;
    }
    list.push([name, parseEntry(name, value, dataLength, path)]);
  }
  // File order = data order; also makes the overlap check a single pass.
  list.sort(([an, a], [bn, b]) => a.begin - b.begin || a.end - b.end || (an < bn ? -1 : an > bn ? 1 : 0));
  let lastEnd = 0, lastName = "";
  for (const [name, e] of list) {
    if (e.end === e.begin) continue;
    if (e.begin < lastEnd) {
      throw new CheckpointError(
        `Checkpoint "${path}": tensor "${name}" overlaps tensor "${lastName}" in the data area`,
      );
    }
    lastEnd = e.end;
    lastName = name;
  }
  return { entries: new Map(list), metadata };
}

/**
 * One linear pass over the raw header before JSON.parse, so a header that is valid JSON but not
 * safetensors-shaped is refused without materialising it: the header nests at most 3 levels
 * (header object, entry object, shape/offsets array) and no array holds more than {@linkcode MAX_RANK}
 * values. A 16 MB header of one shape array would otherwise become millions of heap numbers.
 */
function checkHeaderShape(header: Uint8Array, path: string): void {
  const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c;
  const open: number[] = []; // per nesting level: 0x5b "[" or 0x7b "{"
  const counts: number[] = []; // commas at each level
  let inString = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (open.length === 3) {
        throw new CheckpointError(
          `Checkpoint "${path}" has a safetensors header nested more than 3 levels deep (at byte ${i})`,
        );
      }
      open.push(c);
      counts.push(0);
    } else if (c === 0x5d || c === 0x7d) {
      open.pop();
      counts.pop();
    } else if (c === COMMA && open.length) {
      const n = ++counts[counts.length - 1]!;
      if (open[open.length - 1] === 0x5b && n >= MAX_RANK) {
        throw new CheckpointError(
          `Checkpoint "${path}" has a safetensors header with an array of more than ${MAX_RANK} values ` +
            `(at byte ${i}); shapes have at most ${MAX_RANK} dimensions`,
        );
      }
    }
  }
}

function parseEntry(name: string, value: unknown, dataLength: number, path: string): SafetensorsEntry {
  const where = `Checkpoint "${path}": tensor ${JSON.stringify(name.slice(0, 200))}`;
  if (name.includes("\0") || !name.isWellFormed()) {
    throw new CheckpointError(`${where} has a name with a NUL or an unpaired surrogate`);
  }
  if (!isPlainObject(value)) throw new CheckpointError(`${where} has a header entry that is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string" || !DTYPES.has(dtype)) {
    throw new CheckpointError(
      `${where} has unsupported dtype ${JSON.stringify(dtype)} (supported: ${[...DTYPES].join(", ")})`,
    );
  }
  if (!Array.isArray(shape)) throw new CheckpointError(`${where} has no shape array`);
  const dims: number[] = [];
  let numel = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new CheckpointError(`${where} has invalid dimension ${JSON.stringify(d)} in its shape`);
    }
    dims.push(d);
  }
  if (!dims.includes(0)) {
    for (const d of dims) {
      numel *= d;
      if (numel > Number.MAX_SAFE_INTEGER) {
        throw new CheckpointError(`${where} has an absurd shape [${dims}]`);
      }
    }
  } else numel = 0;
  const size = DTYPE_SIZE[dtype as DType];
  const byteLength = numel * size;
  if (byteLength > dataLength) {
    throw new CheckpointError(
      `${where} needs ${byteLength} bytes for shape [${dims}] but the data area has ${dataLength}`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new CheckpointError(`${where} has no [begin, end] data_offsets`);
  }
  const [begin, end] = offsets;
  for (const o of [begin, end]) {
    if (typeof o !== "number" || !Number.isSafeInteger(o) || o < 0) {
      throw new CheckpointError(`${where} has invalid data offset ${JSON.stringify(o)}`);
    }
  }
  if (end < begin) {
    throw new CheckpointError(`${where} has data_offsets [${begin}, ${end}] that end before they begin`);
  }
  if (end > dataLength) {
    throw new CheckpointError(
      `${where} has data_offsets [${begin}, ${end}] past the end of the data area (${dataLength} bytes)`,
    );
  }
  if (end - begin !== byteLength) {
    throw new CheckpointError(
      `${where} spans ${end - begin} bytes but ${dtype} [${dims}] needs ${byteLength}`,
    );
  }
  return { dtype: dtype as DType, shape: dims, byteLength, begin, end };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Header bytes (padded with spaces to a multiple of 8) plus the data layout for `tensors`. */
function buildHeader(
  tensors: Record<string, HostTensor>,
  metadata: Record<string, string> | undefined,
): { header: Uint8Array; order: string[] } {
  // Sorted by UTF-16 code units, as the reference files store tensors in sorted-name order.
  const order = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  let offset = 0;
  for (const name of order) {
    if (name === "__metadata__") throw new CheckpointError(`Cannot write a tensor named "__metadata__"`);
    const t = tensors[name]!;
    const expected = t.shape.reduce((a, b) => a * b, 1) * (DTYPE_SIZE[t.dtype] ?? NaN);
    if (t.data.byteLength !== expected) {
      throw new CheckpointError(
        `Cannot write tensor "${name}": ${t.data.byteLength} bytes for ${t.dtype} [${t.shape}]`,
      );
    }
    // Built by hand: JSON.stringify of an object would move integer-like names to the front.
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${
        offset + expected
      }]}`,
    );
    offset += expected;
  }
  if (metadata) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  const text = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, order };
}

/** Serialises `tensors` (sorted by name) and optional string `metadata` to safetensors bytes. */
export function encodeSafetensors(
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const { header, order } = buildHeader(tensors, metadata);
  const total = order.reduce((n, k) => n + tensors[k]!.data.byteLength, header.byteLength);
  const out = new Uint8Array(total);
  out.set(header, 0);
  let at = header.byteLength;
  for (const name of order) {
    out.set(tensors[name]!.data, at);
    at += tensors[name]!.data.byteLength;
  }
  return out;
}

/** Writes `tensors` to `path` as safetensors, streaming tensor data instead of concatenating it. */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, order } = buildHeader(tensors, metadata);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await writeAll(file, header);
  for (const name of order) await writeAll(file, tensors[name]!.data);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) done += await file.write(bytes.subarray(done));
}
