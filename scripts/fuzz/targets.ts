/**
 * Fuzz targets of the TypeScript readers: for each, how one input is run (to completion: open and
 * read every tensor), which error type is the expected refusal, the seed inputs (golden model files
 * when present, else generated ones) and a structure-aware mutator.
 *
 * @module
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import {
  CheckpointError,
  encodeSafetensors,
  openCheckpoint,
  openZip,
  parseSafetensorsBytes,
  unpickle,
} from "../../ffi/formats/mod.ts";
import { EngineFileError, EngineWriter, openEngine, type TensorPlan } from "../../engines/format.ts";
import type { HostTensor } from "../../ffi/host_tensor.ts";
import { goldenRoot } from "../../tests/_fixtures/golden_root.ts";
import { OP, PickleWriter, stateDictPickle, type TorchTensorSpec } from "../../tests/_fixtures/pickle_writer.ts";
import { buildTorchZip } from "../../tests/_fixtures/zip_writer.ts";
import {
  codecsBombPickle,
  nameDagTorch,
  setBombPickle,
  shapeArraySafetensors,
  stridedTorch,
} from "../../tests/_fixtures/hostile_checkpoints.ts";
import { concat, mutateBytes, mutateJson, type Rng } from "./mutate.ts";

/** Names of the fuzz targets. */
export const TARGET_NAMES = ["safetensors", "zip", "pickle", "torch", "engine"] as const;
/** One fuzz target's name. */
export type TargetName = typeof TARGET_NAMES[number];

/** A fuzz target. */
export interface FuzzTarget {
  /** Runs one input to completion; resolves, or throws (an expected refusal when {@linkcode expected}). */
  run(input: Uint8Array, scratch: string): Promise<void>;
  /** Whether `e` is the target's typed refusal (anything else is a finding). */
  expected(e: unknown): boolean;
  /** One structure-aware or byte-level mutation of `seed`. */
  mutate(seed: Uint8Array, rng: Rng, seeds: readonly Uint8Array[]): Uint8Array;
}

const isCheckpointError = (e: unknown) => e instanceof CheckpointError;

/** Opens `scratch` as a checkpoint and reads every tensor. */
async function readAll(scratch: string): Promise<void> {
  using f = await openCheckpoint(scratch);
  for (const n of f.names) await f.read(n);
}

/** Byte mutations, several stacked. */
function stacked(seed: Uint8Array, rng: Rng, seeds: readonly Uint8Array[]): Uint8Array {
  let b = seed;
  for (let i = 1 + rng.below(3); i > 0; i--) b = mutateBytes(b, rng, seeds);
  return b;
}

/** Splits a safetensors file into header JSON text and data (null when the frame itself is broken). */
function splitSafetensors(b: Uint8Array): { header: string; data: Uint8Array } | null {
  if (b.length < 8) return null;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (n > b.length - 8) return null;
  return { header: new TextDecoder().decode(b.subarray(8, 8 + n)), data: b.subarray(8 + n) };
}

function sealSafetensors(header: string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

/** Mutates the JSON of a framed header (re-framing it), else falls back to bytes. */
function jsonAware(
  seed: Uint8Array,
  rng: Rng,
  seeds: readonly Uint8Array[],
  split: (b: Uint8Array) => { header: string; data: Uint8Array } | null,
  seal: (header: string, data: Uint8Array) => Uint8Array,
): Uint8Array {
  const parts = split(seed);
  if (!parts || rng.chance(0.3)) {
    // Bytes, mostly in the frame and header (the data area is opaque to the readers).
    if (!parts) return stacked(seed, rng, seeds);
    const head = seed.subarray(0, seed.length - parts.data.length);
    return concat(stacked(head, rng, seeds), parts.data);
  }
  let json: unknown;
  try {
    json = JSON.parse(parts.header);
  } catch {
    return seal(new TextDecoder().decode(mutateBytes(new TextEncoder().encode(parts.header), rng)), parts.data);
  }
  for (let i = 1 + rng.below(2); i > 0; i--) json = mutateJson(json, rng);
  return seal(JSON.stringify(json), parts.data);
}

// ---------------------------------------------------------------------------------------------
// Engine files: the header is re-sealed (length, padding, checksum) so mutations reach the schema
// checks; anyone can recompute the checksums of a hostile file.

const ENGINE_PREFIX = 16, ENGINE_TRAILER = 64, ENGINE_ALIGN = 256;

function splitEngine(b: Uint8Array): { header: string; data: Uint8Array } | null {
  if (b.length < ENGINE_PREFIX + ENGINE_TRAILER) return null;
  const len = new DataView(b.buffer, b.byteOffset).getUint32(12, true);
  if (ENGINE_PREFIX + len + ENGINE_TRAILER > b.length) return null;
  return {
    header: new TextDecoder().decode(b.subarray(ENGINE_PREFIX, ENGINE_PREFIX + len)).trimEnd(),
    data: b.subarray(ENGINE_PREFIX + len, b.length - ENGINE_TRAILER),
  };
}

function sealEngine(header: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(header);
  const total = Math.ceil((ENGINE_PREFIX + json.length) / ENGINE_ALIGN) * ENGINE_ALIGN;
  const head = new Uint8Array(total).fill(0x20);
  head.set(new TextEncoder().encode("L2DENGN\0"), 0);
  const v = new DataView(head.buffer);
  v.setUint32(8, 1, true);
  v.setUint32(12, total - ENGINE_PREFIX, true);
  head.set(json, ENGINE_PREFIX);
  const trailer = new Uint8Array(ENGINE_TRAILER);
  trailer.set(new TextEncoder().encode("L2DTRLR\0"), 0);
  new DataView(trailer.buffer).setBigUint64(8, BigInt(data.length), true);
  trailer.set(createHash("sha256").update(head.subarray(ENGINE_PREFIX)).digest(), 16);
  return concat(head, data, trailer);
}

// ---------------------------------------------------------------------------------------------
// Pickles: byte mutations plus inserted opcodes (with short arguments), so the interpreter's rarely
// used paths are reached.

const OPCODES = [
  0x80,
  0x95,
  0x2e,
  0x28,
  0x30,
  0x31,
  0x32,
  0x4e,
  0x88,
  0x89,
  0x4a,
  0x4b,
  0x4d,
  0x8a,
  0x8b,
  0x47,
  0x58,
  0x8c,
  0x8d,
  0x54,
  0x55,
  0x42,
  0x43,
  0x8e,
  0x96,
  0x7d,
  0x5d,
  0x29,
  0x8f,
  0x64,
  0x6c,
  0x74,
  0x85,
  0x86,
  0x87,
  0x91,
  0x90,
  0x73,
  0x75,
  0x61,
  0x65,
  0x71,
  0x72,
  0x94,
  0x68,
  0x6a,
  0x63,
  0x93,
  0x52,
  0x81,
  0x92,
  0x62,
  0x51,
  0x69,
  0x6f,
  0x82,
];

/**
 * Memo replay: calls one memoised object (hopefully a global) on one or two others, many times, just
 * before STOP: `BINGET g, BINGET x, TUPLE1, REDUCE, POP` repeated. A few bytes a call: the shape of
 * the amplification attacks (issue 12), which blind byte mutations almost never assemble.
 */
function memoReplay(seed: Uint8Array, rng: Rng): Uint8Array | null {
  const puts: number[] = [];
  for (let i = 0; i + 1 < seed.length; i++) if (seed[i] === 0x71) puts.push(seed[i + 1]!);
  const stop = seed.lastIndexOf(0x2e);
  if (puts.length < 2 || stop < 0) return null;
  const block = rng.chance(0.5)
    ? [0x68, rng.pick(puts), 0x68, rng.pick(puts), 0x85, 0x52, 0x30] // f(x)
    : [0x68, rng.pick(puts), 0x68, rng.pick(puts), 0x68, rng.pick(puts), 0x86, 0x52, 0x30]; // f(x, y)
  const reps = 1 + rng.below(3000);
  const rep = new Uint8Array(block.length * reps);
  for (let i = 0; i < reps; i++) rep.set(block, i * block.length);
  return concat(seed.subarray(0, stop), rep, seed.subarray(stop));
}

function mutatePickle(seed: Uint8Array, rng: Rng, seeds: readonly Uint8Array[]): Uint8Array {
  if (rng.chance(0.2)) {
    const replayed = memoReplay(seed, rng);
    if (replayed) return replayed;
  }
  if (rng.chance(0.6)) return stacked(seed, rng, seeds);
  const at = rng.below(seed.length + 1);
  const ins = [rng.pick(OPCODES)];
  for (let i = rng.below(5); i > 0; i--) ins.push(rng.below(4) === 0 ? 0xff : rng.below(8));
  return concat(seed.subarray(0, at), new Uint8Array(ins), seed.subarray(at));
}

/** The target table. */
export const TARGETS: Readonly<Record<TargetName, FuzzTarget>> = {
  safetensors: {
    async run(input) {
      using f = parseSafetensorsBytes(input, "fuzz");
      for (const n of f.names) await f.read(n);
    },
    expected: isCheckpointError,
    mutate: (seed, rng, seeds) => jsonAware(seed, rng, seeds, splitSafetensors, sealSafetensors),
  },
  zip: {
    async run(input, scratch) {
      await Deno.writeFile(scratch, input);
      using z = await openZip(scratch);
      for (const e of z.entries.values()) if (e.size <= 1 << 20) await z.read(e.name);
    },
    expected: isCheckpointError,
    mutate: stacked,
  },
  pickle: {
    run(input) {
      unpickle(input, { label: "fuzz", persistentLoad: (pid) => pid });
      return Promise.resolve();
    },
    expected: isCheckpointError,
    mutate: mutatePickle,
  },
  torch: {
    async run(input, scratch) {
      await Deno.writeFile(scratch, input);
      await readAll(scratch);
    },
    expected: isCheckpointError,
    mutate: stacked,
  },
  engine: {
    async run(input, scratch) {
      await Deno.writeFile(scratch, input);
      using e = await openEngine(scratch, { verify: true });
      for (const n of e.names) await e.read(n);
      for (const c of Object.keys(e.header.components)) e.config(c);
    },
    expected: (e) => e instanceof EngineFileError,
    mutate: (seed, rng, seeds) => jsonAware(seed, rng, seeds, splitEngine, sealEngine),
  },
};

// ---------------------------------------------------------------------------------------------
// Seeds

/** Golden files larger than this are left out (each input is copied and written once per run). */
const MAX_SEED_BYTES = 16 * 1024 * 1024;

async function goldenFiles(re: RegExp): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) await walk(p);
      else if (re.test(e.name) && (await Deno.stat(p)).size <= MAX_SEED_BYTES) out.push(p);
    }
  };
  try {
    await walk(goldenRoot());
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

const f32 = (values: number[], shape: number[]): HostTensor => ({
  dtype: "F32",
  shape,
  data: new Uint8Array(new Float32Array(values).buffer),
});

function spec(over: Partial<TorchTensorSpec>): TorchTensorSpec {
  return {
    name: "w",
    key: "0",
    storageType: "FloatStorage",
    storageNumel: 6,
    offset: 0,
    shape: [2, 3],
    stride: [3, 1],
    ...over,
  };
}

const STORAGE6 = new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);

async function generatedTorch(): Promise<Uint8Array[]> {
  const tensors = [
    spec({}),
    spec({ name: "t", shape: [3, 2], stride: [1, 3] }),
    spec({ name: "row", offset: 3, shape: [3], stride: [1] }),
    spec({ name: "s", offset: 5, shape: [], stride: [] }),
    spec({ name: "h", key: "1", storageType: "HalfStorage", storageNumel: 2, shape: [2, 1], stride: [1, 1] }),
  ];
  const storages = { "0": STORAGE6, "1": new Uint8Array([0, 0x3c, 0, 0xc0]) };
  return [
    await buildTorchZip("archive", stateDictPickle(tensors), storages),
    await buildTorchZip("model", stateDictPickle(tensors, true), storages, { zip64: true }),
    await nameDagTorch(4, 3),
    await stridedTorch([2, 2], [1, 2]),
  ];
}

async function generatedEngines(): Promise<Uint8Array[]> {
  const dir = await Deno.makeTempDir({ prefix: "l2d_fuzz_seed_" });
  try {
    const plans: TensorPlan[] = [
      { name: "unet.a", dtype: "F16", shape: [5] },
      { name: "unet.b", dtype: "F32", shape: [2, 3] },
      { name: "tokenizer.vocab.json", dtype: "U8", shape: [4] },
    ];
    const path = join(dir, "e.l2de");
    const w = await EngineWriter.create(path, {
      target: "cpu",
      components: { unet: { block_out_channels: [4] }, tokenizer: { files: { "vocab.json": "tokenizer.vocab.json" } } },
      style: { clip_skip: 2, prompt_template: "x, {}", t_index_list: [32, 45], num_inference_steps: 50 },
      provenance: [{ file: "a.safetensors", role: "unet", bytes: 3, sha256: "0".repeat(64) }],
    }, plans);
    await w.write("unet.a", new Uint8Array(10));
    await w.write("unet.b", new Uint8Array(24));
    await w.write("tokenizer.vocab.json", new TextEncoder().encode('{""}'));
    await w.finish();
    return [await Deno.readFile(path)];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The data.pkl of a torch zip (for pickle seeds). */
async function dataPkl(path: string): Promise<Uint8Array | null> {
  using z = await openZip(path);
  const name = [...z.entries.keys()].find((n) => n.endsWith("/data.pkl"));
  return name ? await z.read(name) : null;
}

/** Seed inputs of a target: golden files when present, plus generated ones (always). */
export async function loadSeeds(target: TargetName): Promise<Uint8Array[]> {
  const read = async (re: RegExp) => await Promise.all((await goldenFiles(re)).map((p) => Deno.readFile(p)));
  switch (target) {
    case "safetensors":
      return [
        ...await read(/\.safetensors$/),
        encodeSafetensors({ a: f32([1, 2, 3, 4], [2, 2]), b: f32([], [0]), c: f32([5], []) }, { format: "pt" }),
        shapeArraySafetensors(8),
      ];
    case "zip":
    case "torch":
      return [...await read(/\.(pt|ckpt)$/), ...await generatedTorch()];
    case "pickle": {
      const golden = (await Promise.all((await goldenFiles(/\.(pt|ckpt)$/)).map(dataPkl))).filter((p) => p !== null);
      const small = new PickleWriter().proto(2).op(OP.EMPTY_DICT).str("a").op(OP.EMPTY_LIST).op(OP.MARK).str("x")
        .int(2 ** 40).float(0.5).op(OP.NONE).op(OP.APPENDS).op(OP.SETITEM).stop().bytesOut();
      return [
        ...golden,
        stateDictPickle([spec({})], true),
        small,
        codecsBombPickle(64, 2),
        setBombPickle(16, 2),
        // Big memoised objects, so memo replay can reach the amplification the budgets stop.
        codecsBombPickle(100_000, 1),
        setBombPickle(100_000, 1),
      ];
    }
    case "engine":
      return await generatedEngines();
  }
}
