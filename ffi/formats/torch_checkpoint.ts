/**
 * Reader for `torch.save` checkpoints (the zip format of torch >= 1.6): `<root>/data.pkl` is
 * unpickled with the restricted unpickler, storages `<root>/data/<key>` are read lazily per tensor.
 *
 * Tensor names are those of the state dict: the dict at `"state_dict"` when the top level has one
 * (`live2diff.ckpt` style `{"global_step": 0, "state_dict": {...}}`), else the top-level dict; nested
 * dicts are flattened with "." and non-tensor entries (such as `global_step`) are left out.
 *
 * Hostile files are bounded at open, so time and memory stay proportional to the file: the pickle's
 * own budgets (see pickle.ts), the total length of the flattened names ({@linkcode nameBudget}),
 * views that never address a storage element twice and stay inside their storage, and the bytes all
 * views cover against their storages ({@linkcode viewBudget}).
 *
 * @example
 * ```ts ignore
 * import { openTorchCheckpoint } from "./torch_checkpoint.ts";
 * using ckpt = await openTorchCheckpoint("dpt_hybrid_384.pt");
 * const t = await ckpt.read("scratch.output_conv.0.weight");
 * ```
 *
 * @module
 */
import { type DType, DTYPE_SIZE, type HostTensor } from "../host_tensor.ts";
import { CheckpointError } from "./errors.ts";
import { PickleGlobal, unpickle } from "./pickle.ts";
import { RandomAccessFile } from "./random_access.ts";
import type { CheckpointFile, TensorInfo } from "./types.ts";
import { openZipFile, type ZipArchive } from "./zip.ts";

/** data.pkl of real checkpoints is ~100 bytes per tensor; beyond this it is hostile. */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;
/** State dicts nest 1-3 levels; deeper trees are refused rather than recursed into. */
const MAX_DEPTH = 64;
/** Bounds the walk over shared sub-trees (a DAG can encode exponentially many paths). */
const MAX_VISITS = 1_000_000;

/**
 * Budget of the flattened state-dict names (UTF-16 code units, summed over every name and prefix
 * built). Honest names cost about what their keys cost in data.pkl (an SD1.5 checkpoint: ~1,100
 * names, ~70 KB); memoised long keys in a shared sub-dict would cost the file nothing to repeat.
 */
export function nameBudget(pickleBytes: number): number {
  return 4 * 1024 * 1024 + 8 * pickleBytes;
}

/**
 * Budget of the bytes all tensors' views cover, against the bytes of their storages. Tensors may
 * share storage (tied weights, views), but an honest file never reads its data many times over.
 */
export function viewBudget(storageBytes: number): number {
  return 64 * 1024 * 1024 + 4 * storageBytes;
}

/** How a torch storage type is stored on disk and returned. */
export interface StorageKind {
  /** Bytes per stored element. */
  size: number;
  /** dtype returned by `read` (storages without a {@linkcode DType} are converted). */
  dtype: DType;
  /** Conversion of stored elements, if `dtype` differs from the stored type. */
  convert?: "f64" | "i16" | "i8";
}

const STORAGE_KINDS: Readonly<Record<string, StorageKind>> = {
  FloatStorage: { size: 4, dtype: "F32" },
  HalfStorage: { size: 2, dtype: "F16" },
  BFloat16Storage: { size: 2, dtype: "BF16" },
  DoubleStorage: { size: 8, dtype: "F32", convert: "f64" },
  LongStorage: { size: 8, dtype: "I64" },
  IntStorage: { size: 4, dtype: "I32" },
  ShortStorage: { size: 2, dtype: "I32", convert: "i16" },
  CharStorage: { size: 1, dtype: "I32", convert: "i8" },
  ByteStorage: { size: 1, dtype: "U8" },
  BoolStorage: { size: 1, dtype: "BOOL" },
};

/** A storage referenced by the pickle (persistent id), validated against its archive entry. */
export class TorchStorage {
  constructor(
    /** Storage key (entry `<root>/data/<key>`). */
    readonly key: string,
    /** Archive entry holding the bytes. */
    readonly entry: string,
    /** Element type. */
    readonly kind: StorageKind,
    /** Number of elements. */
    readonly numel: number,
  ) {}
}

/** A tensor as described by `_rebuild_tensor_v2`: a strided view of a storage. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** An opened torch checkpoint (see {@linkcode openTorchCheckpoint}). */
export class TorchCheckpointFile implements CheckpointFile {
  readonly format = "torch";
  readonly metadata: Readonly<Record<string, string>> = Object.freeze({});
  readonly names: readonly string[];
  #tensors: Map<string, TorchTensorRef>;

  /** @internal use {@linkcode openTorchCheckpoint}. */
  constructor(
    readonly path: string,
    private readonly zip: ZipArchive,
    tensors: Map<string, TorchTensorRef>,
    /** The unpickled top-level object (dicts as Map, tensors as {@linkcode TorchTensorRef}). */
    readonly root: unknown,
  ) {
    this.#tensors = tensors;
    this.names = Object.freeze([...tensors.keys()]);
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  #ref(name: string): TorchTensorRef {
    const t = this.#tensors.get(name);
    if (!t) throw new CheckpointError(`Checkpoint "${this.path}" has no tensor "${name}"`);
    return t;
  }

  info(name: string): TensorInfo {
    const t = this.#ref(name);
    const dtype = t.storage.kind.dtype;
    return { dtype, shape: [...t.shape], byteLength: product(t.shape) * DTYPE_SIZE[dtype] };
  }

  async read(name: string): Promise<HostTensor> {
    const t = this.#ref(name);
    if (this.zip.file.closed) {
      throw new CheckpointError(`Cannot read "${name}": checkpoint "${this.path}" is closed`);
    }
    const { kind } = t.storage;
    const n = product(t.shape);
    let raw: Uint8Array;
    if (n === 0) raw = new Uint8Array(0);
    else if (isContiguous(t.shape, t.stride)) {
      raw = await this.zip.read(t.storage.entry, t.offset * kind.size, n * kind.size);
    } else {
      // Read the span the view touches, then gather it into C order.
      const span = extent(t, this.path) - t.offset;
      const src = await this.zip.read(t.storage.entry, t.offset * kind.size, span * kind.size);
      raw = gather(src, t.shape, t.stride, kind.size);
    }
    return { dtype: kind.dtype, shape: [...t.shape], data: convert(raw, kind) };
  }

  /** Reads every tensor of the state dict (see the module doc for which dict that is). */
  async stateDict(): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const name of this.names) out[name] = await this.read(name);
    return out;
  }

  close(): void {
    this.zip.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Error for files in the pre-1.6 (non-zip) torch format. */
export function legacyFormatError(path: string): CheckpointError {
  return new CheckpointError(
    `Checkpoint "${path}" uses the legacy (non-zip) torch format, which is not supported; ` +
      `re-save it with torch.save(..., _use_new_zipfile_serialization=True)`,
  );
}

/** True for the start of a legacy torch file: pickle PROTO 2 then the LONG1 magic number. */
export function isLegacyTorchMagic(head: Uint8Array): boolean {
  return head.length >= 3 && head[0] === 0x80 && head[1]! <= 5 && head[2] === 0x8a;
}

/** Opens a `torch.save` zip checkpoint, unpickling `data.pkl` with the restricted unpickler. */
export async function openTorchCheckpoint(path: string): Promise<TorchCheckpointFile> {
  const file = await RandomAccessFile.open(path);
  try {
    if (isLegacyTorchMagic(await file.readAt(0, Math.min(3, file.size)))) throw legacyFormatError(path);
  } catch (e) {
    file.close();
    throw e;
  }
  const zip = await openZipFile(file);
  try {
    const { root, tensors } = await load(zip, path);
    return new TorchCheckpointFile(path, zip, tensors, root);
  } catch (e) {
    zip.close();
    throw e;
  }
}

async function load(
  zip: ZipArchive,
  path: string,
): Promise<{ root: unknown; tensors: Map<string, TorchTensorRef> }> {
  const pkl = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) {
    throw new CheckpointError(
      `Checkpoint "${path}" is a ZIP archive but not a torch.save file (no <root>/data.pkl)`,
    );
  }
  const prefix = pkl.slice(0, -"data.pkl".length);
  const byteorder = zip.entries.get(`${prefix}byteorder`);
  if (byteorder && byteorder.size < 16) {
    const order = new TextDecoder().decode(await zip.read(byteorder.name)).trim();
    if (order !== "little") {
      throw new CheckpointError(`Checkpoint "${path}" stores ${order}-endian data, which is not supported`);
    }
  }
  const pklEntry = zip.entry(pkl);
  if (pklEntry.size > MAX_PICKLE_BYTES) {
    throw new CheckpointError(`Checkpoint "${path}" has an absurd data.pkl of ${pklEntry.size} bytes`);
  }
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== "storage") {
      throw new CheckpointError(`Checkpoint "${path}" has an unsupported persistent id (expected a storage)`);
    }
    const [, type, key, , numel] = pid as unknown[];
    if (!(type instanceof PickleGlobal) || type.module !== "torch" || !(type.name in STORAGE_KINDS)) {
      throw new CheckpointError(`Checkpoint "${path}" has a storage of unsupported type`);
    }
    if (typeof key !== "string" || !/^[\w.-]{1,64}$/.test(key)) {
      throw new CheckpointError(`Checkpoint "${path}" has a malformed storage key`);
    }
    const kind = STORAGE_KINDS[type.name]!;
    const known = storages.get(key);
    if (known) {
      if (known.kind !== kind) {
        throw new CheckpointError(`Checkpoint "${path}": storage "${key}" is used with two types`);
      }
      return known;
    }
    if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) {
      throw new CheckpointError(`Checkpoint "${path}": storage "${key}" has an invalid size`);
    }
    const entry = zip.entries.get(`${prefix}data/${key}`);
    if (!entry) throw new CheckpointError(`Checkpoint "${path}" lacks the data of storage "${key}"`);
    zip.checkReadable(entry);
    if (numel * kind.size > entry.size) {
      throw new CheckpointError(
        `Checkpoint "${path}": storage "${key}" declares ${numel} elements but its entry holds only ${entry.size} bytes`,
      );
    }
    const s = new TorchStorage(key, entry.name, kind, numel);
    storages.set(key, s);
    return s;
  };
  const rebuild = (args: readonly unknown[]) => rebuildTensor(args, path);
  const root = unpickle(await zip.read(pkl), {
    label: path,
    persistentLoad,
    reducers: {
      "torch._utils._rebuild_tensor_v2": rebuild,
      "torch._utils._rebuild_tensor": rebuild,
      "torch._utils._rebuild_parameter": (args) => parameterData(args, path),
      "torch._utils._rebuild_parameter_with_state": (args) => parameterData(args, path),
    },
  });
  if (!(root instanceof Map)) {
    throw new CheckpointError(`Checkpoint "${path}" does not hold a dict at its top level`);
  }
  const sd = root.get("state_dict");
  const tensors = new Map<string, TorchTensorRef>();
  const pickleBytes = pklEntry.size;
  flatten(sd instanceof Map ? sd : root, "", tensors, {
    path,
    visits: 0,
    onPath: new Set(),
    nameUnits: 0,
    maxNameUnits: nameBudget(pickleBytes),
  }, 0);
  checkViewBudget(tensors, path);
  return { root, tensors };
}

function parameterData(args: readonly unknown[], path: string): TorchTensorRef {
  if (!(args[0] instanceof TorchTensorRef)) {
    throw new CheckpointError(`Checkpoint "${path}" has a parameter without tensor data`);
  }
  return args[0];
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, checked against the storage. */
function rebuildTensor(args: readonly unknown[], path: string): TorchTensorRef {
  const [storage, offset, size, stride] = args;
  const bad = (what: string) => new CheckpointError(`Checkpoint "${path}" has a tensor with ${what}`);
  if (!(storage instanceof TorchStorage)) throw bad("no storage");
  const s = storage;
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
    throw bad("an invalid storage offset");
  }
  const ints = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v) || v.length > 64) throw bad(`an invalid ${what}`);
    for (const d of v) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) throw bad(`an invalid ${what}`);
    }
    return [...v] as number[];
  };
  const shape = ints(size, "size"), strides = ints(stride, "stride");
  if (shape.length !== strides.length) throw bad("a stride of the wrong rank");
  const t = new TorchTensorRef(s, offset, shape, strides);
  if (!Number.isSafeInteger(shape.reduce((a, b) => a * b, 1))) throw bad(`an absurd shape [${shape}]`);
  if (product(shape) > 0) checkNonOverlapping(shape, strides, bad);
  if (product(shape) > 0 && extent(t, path) > s.numel) {
    throw new CheckpointError(
      `Checkpoint "${path}" has a tensor of shape [${shape}] at offset ${offset} that runs past the end of storage "${s.key}" (${s.numel} elements)`,
    );
  }
  return t;
}

interface WalkState {
  path: string;
  visits: number;
  onPath: Set<unknown>;
  /** UTF-16 code units of the names built so far. */
  nameUnits: number;
  maxNameUnits: number;
}

/** Refuses files whose tensors together view their storages many times over (see {@linkcode viewBudget}). */
function checkViewBudget(tensors: ReadonlyMap<string, TorchTensorRef>, path: string): void {
  const storages = new Set<TorchStorage>();
  let viewBytes = 0;
  for (const t of tensors.values()) {
    storages.add(t.storage);
    viewBytes += product(t.shape) * t.storage.kind.size;
  }
  let storageBytes = 0;
  for (const s of storages) storageBytes += s.numel * s.kind.size;
  const limit = viewBudget(storageBytes);
  if (viewBytes > limit) {
    throw new CheckpointError(
      `Checkpoint "${path}" has tensors covering ${viewBytes} bytes over ${storageBytes} bytes of storage ` +
        `(limit ${limit}): the same data is viewed many times over`,
    );
  }
}

function flatten(
  dict: Map<unknown, unknown>,
  prefix: string,
  out: Map<string, TorchTensorRef>,
  st: WalkState,
  depth: number,
): void {
  if (depth > MAX_DEPTH) {
    throw new CheckpointError(`Checkpoint "${st.path}" nests dicts more than ${MAX_DEPTH} levels deep`);
  }
  if (st.onPath.has(dict)) {
    throw new CheckpointError(`Checkpoint "${st.path}" contains a recursive structure at "${prefix}"`);
  }
  st.onPath.add(dict);
  for (const [k, v] of dict) {
    if (++st.visits > MAX_VISITS) {
      throw new CheckpointError(`Checkpoint "${st.path}" has more than ${MAX_VISITS} entries`);
    }
    if (typeof k !== "string" && typeof k !== "number") continue;
    if (!(v instanceof TorchTensorRef) && !(v instanceof Map)) continue;
    const key = String(k);
    // Charged before concatenating: checking `out.has(name)` would flatten a huge rope string.
    st.nameUnits += prefix.length + key.length + 1;
    if (st.nameUnits > st.maxNameUnits) {
      throw new CheckpointError(
        `Checkpoint "${st.path}" has state-dict names longer than ${st.maxNameUnits} characters in total ` +
          `(the budget for its data.pkl): memoised keys are repeated in shared sub-dicts`,
      );
    }
    const name = prefix + key;
    checkName(name, st.path);
    if (v instanceof TorchTensorRef) {
      if (out.has(name)) throw new CheckpointError(`Checkpoint "${st.path}" has two tensors named "${name}"`);
      out.set(name, v);
    } else if (v instanceof Map) flatten(v, name + ".", out, st, depth + 1);
  }
  st.onPath.delete(dict);
}

/**
 * A view must not address one storage element twice: otherwise a few bytes of storage (stride 0, or
 * strides smaller than the inner dimensions' extent) could declare a tensor of any size, which `read`
 * would then materialise. Size-1 dimensions are exempt (their stride is never used; torch's
 * `expand` gives them stride 0, e.g. CLIP's position_ids). Sorting by stride, each dimension must
 * step over everything the smaller-stride dimensions span.
 */
function checkNonOverlapping(
  shape: readonly number[],
  stride: readonly number[],
  bad: (what: string) => CheckpointError,
): void {
  const dims: number[] = [];
  for (let i = 0; i < shape.length; i++) if (shape[i]! > 1) dims.push(i);
  dims.sort((a, b) => stride[a]! - stride[b]!);
  let span = 0; // largest offset the inner dimensions reach
  for (const d of dims) {
    if (stride[d]! <= span) {
      throw bad(
        `strides [${stride}] for shape [${shape}] that may address one storage element twice ` +
          `(zero, overlapping or interleaved strides)`,
      );
    }
    span += (shape[d]! - 1) * stride[d]!;
  }
}

/** Names must be well-formed Unicode without NUL: they become C strings keyed by their UTF-8 bytes. */
function checkName(name: string, path: string): void {
  if (name.includes("\0") || !name.isWellFormed()) {
    throw new CheckpointError(
      `Checkpoint "${path}" has a tensor name with a NUL or an unpaired surrogate (${
        JSON.stringify(name.slice(0, 200))
      })`,
    );
  }
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) throw new CheckpointError(`Absurd tensor shape [${shape}]`);
  return n;
}

/** One past the largest storage element a (non-empty) view touches. */
function extent(t: TorchTensorRef, path: string): number {
  let last = t.offset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
  if (!Number.isSafeInteger(last + 1)) {
    throw new CheckpointError(`Checkpoint "${path}" has a tensor with absurd strides [${t.stride}]`);
  }
  return last + 1;
}

/** C-contiguous, ignoring strides of size-1 dimensions (torch gives them arbitrary values). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Copies a strided view (`src` starts at the view's first element) into C order. */
function gather(
  src: Uint8Array,
  shape: readonly number[],
  stride: readonly number[],
  size: number,
): Uint8Array {
  const n = product(shape);
  const out = new Uint8Array(n * size);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let at = 0;
  for (let e = 0; e < n; e++) {
    out.set(src.subarray(at * size, at * size + size), e * size);
    // Odometer increment over the multi-index, adjusting the source position incrementally.
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) {
        at += stride[d]!;
        break;
      }
      at -= (shape[d]! - 1) * stride[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** Converts stored elements to the returned dtype (float64 → F32, int16/int8 → I32). */
function convert(raw: Uint8Array, kind: StorageKind): Uint8Array {
  if (!kind.convert) return raw;
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.byteLength / kind.size;
  const out = new DataView(new ArrayBuffer(n * 4));
  for (let i = 0; i < n; i++) {
    if (kind.convert === "f64") out.setFloat32(i * 4, v.getFloat64(i * 8, true), true);
    else if (kind.convert === "i16") out.setInt32(i * 4, v.getInt16(i * 2, true), true);
    else out.setInt32(i * 4, v.getInt8(i), true);
  }
  return new Uint8Array(out.buffer);
}
