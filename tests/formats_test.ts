/**
 * Checkpoint readers (ffi/formats): every golden model file opened and checked against the Philox
 * weight rule, safetensors write/read round trips, and hostile or broken inputs (generated here)
 * that must all fail with a clear CheckpointError. The golden root can be overridden with the env
 * var L2D_GOLDEN_DIR.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { type HostTensor, toFloat32 } from "../ffi/host_tensor.ts";
import { philoxWeight } from "../ffi/philox.ts";
import {
  ALLOWED_GLOBALS,
  CheckpointError,
  type CheckpointFile,
  detectFormat,
  encodeSafetensors,
  openCheckpoint,
  openSafetensors,
  openTorchCheckpoint,
  parseSafetensorsBytes,
  TorchCheckpointFile,
  unpickle,
  writeSafetensors,
} from "../ffi/formats/mod.ts";
import { goldenPath, goldenSeeds } from "./_fixtures/golden_root.ts";
import { OP, PickleWriter, stateDictPickle, type TorchTensorSpec, writeTensor } from "./_fixtures/pickle_writer.ts";
import { buildTorchZip, buildZip } from "./_fixtures/zip_writer.ts";

// ---------------------------------------------------------------------------------------------
// Golden model files
// ---------------------------------------------------------------------------------------------

const MODELS = goldenPath("models");
const SEEDS = await goldenSeeds();

async function listModelFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await listModelFiles(p));
    else if (/\.(safetensors|pt|ckpt)$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

/** Which seed generated a file, and how a stored key maps to its Philox name (undefined: not Philox). */
interface PhiloxRule {
  seed: number;
  philoxName: (key: string) => string | undefined;
}

const PHILOX_RULES: Record<string, PhiloxRule> = {
  "tiny_sd15/unet/diffusion_pytorch_model.safetensors": { seed: SEEDS.unet, philoxName: (k) => k },
  "tiny_sd15/text_encoder/model.safetensors": {
    seed: SEEDS.clip,
    philoxName: (k) => (k.endsWith("position_ids") ? undefined : k),
  },
  "tiny_sd15/vae/diffusion_pytorch_model.safetensors": { seed: SEEDS.vae, philoxName: (k) => k },
  "taesd/diffusion_pytorch_model.safetensors": { seed: SEEDS.taesd, philoxName: (k) => k },
  "dpt_hybrid_reduced.pt": { seed: SEEDS.midasReduced, philoxName: (k) => k },
  // The motion-module ckpt prefixes keys with "module."; pos_encoder.pe buffers are sinusoidal.
  "live2diff_tiny_motion_module.ckpt": {
    seed: SEEDS.unet,
    philoxName: (k) => (k.endsWith("pos_encoder.pe") ? undefined : k.replace(/^module\./, "")),
  },
  // LoRA factors are Philox by key; `.alpha` is the constant 2.0 (checked separately).
  "lora_tiny_kohya.safetensors": {
    seed: SEEDS.lora,
    philoxName: (k) => (k.endsWith(".alpha") ? undefined : k),
  },
};

function assertSameFloats(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what}[${i}]: got ${got[i]}, expected ${want[i]}`);
  }
}

/** Sinusoidal PE of AnimateDiff's PositionalEncoding, float32 like torch computes it. */
function checkPositionalEncoding(t: HostTensor, what: string): void {
  const [one, len, c] = t.shape as [number, number, number];
  assert.equal(one, 1, what);
  const v = toFloat32(t);
  for (let p = 0; p < len; p++) {
    for (let i = 0; i < c; i += 2) {
      const arg = Math.fround(p * Math.fround(Math.exp(i * Math.fround(-Math.log(10000) / c))));
      assert.ok(Math.abs(v[p * c + i]! - Math.sin(arg)) < 1e-5, `${what} sin at ${p},${i}`);
      assert.ok(Math.abs(v[p * c + i + 1]! - Math.cos(arg)) < 1e-5, `${what} cos at ${p},${i}`);
    }
  }
}

Deno.test("golden model files: every tensor opens and matches the Philox weight rule", async () => {
  const files = await listModelFiles(MODELS);
  assert.ok(files.length >= 8, `found only ${files.length} model files under ${MODELS}`);
  const seen = new Set<string>();
  for (const path of files) {
    const rel = relative(MODELS, path).replaceAll("\\", "/");
    using f = await openCheckpoint(path);
    assert.ok(f.names.length > 0, `${rel} has no tensors`);
    const rule = PHILOX_RULES[rel];
    let checked = 0;
    for (const name of f.names) {
      const info = f.info(name);
      const t = await f.read(name);
      assert.equal(t.dtype, info.dtype);
      assert.deepEqual(t.shape, info.shape);
      assert.equal(t.data.byteLength, info.byteLength, `${rel}:${name}`);
      if (!rule) continue;
      const philoxName = rule.philoxName(name);
      if (philoxName === undefined) continue;
      assertSameFloats(toFloat32(t), philoxWeight(philoxName, t.shape, rule.seed), `${rel}:${name}`);
      checked++;
    }
    if (rule) assert.ok(checked > 0, `${rel}: no tensor compared`);
    seen.add(rel);
  }
  for (const rel of Object.keys(PHILOX_RULES)) assert.ok(seen.has(rel), `missing golden file ${rel}`);
  assert.ok(seen.has("dreambooth_tiny_ldm.safetensors"));
});

Deno.test("golden motion-module ckpt: live2diff layout, pe buffers, stateDict()", async () => {
  using f = await openTorchCheckpoint(join(MODELS, "live2diff_tiny_motion_module.ckpt"));
  assert.ok(f instanceof TorchCheckpointFile);
  assert.ok(f.root instanceof Map);
  assert.equal(f.root.get("global_step"), 0);
  assert.ok(!f.has("global_step"));
  assert.ok(f.names.every((n) => n.startsWith("module.")));
  assert.ok(f.names.some((n) => n.includes("motion_modules.")));
  assert.ok(f.names.some((n) => n.startsWith("module.flow_conv_in.")));
  const pes = f.names.filter((n) => n.endsWith("pos_encoder.pe"));
  assert.ok(pes.length > 0);
  for (const n of pes) {
    assert.equal(f.info(n).shape[1], 24);
    checkPositionalEncoding(await f.read(n), n);
  }
  const sd = await f.stateDict();
  assert.deepEqual(Object.keys(sd), [...f.names]);
});

Deno.test("golden reduced MiDaS .pt: names are a subset of the real DPT-Hybrid manifest", async () => {
  using f = await openCheckpoint(join(MODELS, "dpt_hybrid_reduced.pt"));
  assert.equal(f.format, "torch");
  const manifest: [string, number[]][] = JSON.parse(
    await Deno.readTextFile(goldenPath("cases/midas/dpt_hybrid_384_state_dict_manifest.json")),
  );
  const full = new Map(manifest);
  for (const n of f.names) {
    assert.ok(full.has(n), `${n} is not in the real model`);
    assert.equal(f.info(n).shape.length, full.get(n)!.length, `${n}: rank`);
  }
  // Size-1 dims with arbitrary strides (cls_token [1,1,48]) count as contiguous.
  assert.deepEqual(f.info("pretrained.model.cls_token").shape, [1, 1, 48]);
});

Deno.test("golden DreamBooth and LoRA safetensors: dtypes, metadata, values", async () => {
  using db = await openSafetensors(join(MODELS, "dreambooth_tiny_ldm.safetensors"));
  assert.deepEqual(db.metadata, { format: "pt" });
  assert.ok(db.names.every((n) => db.info(n).dtype === "F16" && db.info(n).shape.every((d) => d > 0)));
  for (const prefix of ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."]) {
    assert.ok(db.names.some((n) => n.startsWith(prefix)), prefix);
  }
  // Keys that need no LDM renaming: CLIP under its prefix, conv_in as input_blocks.0.0.
  const f16 = (x: Float32Array) => x.map((v) => Math.f16round(v));
  for (
    const [key, philoxName, seed] of [
      [
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
        SEEDS.dreamboothClip,
      ],
      [
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
        "text_model.final_layer_norm.weight",
        SEEDS.dreamboothClip,
      ],
      ["model.diffusion_model.input_blocks.0.0.weight", "conv_in.weight", SEEDS.dreamboothUnet],
      ["first_stage_model.encoder.conv_in.weight", "encoder.conv_in.weight", SEEDS.dreamboothVae],
    ] as const
  ) {
    const t = await db.read(key);
    assertSameFloats(toFloat32(t), f16(philoxWeight(philoxName, t.shape, seed)), key);
  }
  using lora = await openSafetensors(join(MODELS, "lora_tiny_kohya.safetensors"));
  const alphas = lora.names.filter((n) => n.endsWith(".alpha"));
  assert.ok(alphas.length > 0);
  for (const n of alphas) assert.deepEqual(Array.from(toFloat32(await lora.read(n))), [2]);
});

Deno.test("safetensors writer reproduces golden files byte for byte", async () => {
  for (const rel of ["lora_tiny_kohya.safetensors", "tiny_sd15/text_encoder/model.safetensors"]) {
    const bytes = await Deno.readFile(join(MODELS, rel));
    const f = parseSafetensorsBytes(bytes, rel);
    const tensors: Record<string, HostTensor> = {};
    for (const n of f.names) tensors[n] = await f.read(n);
    assert.deepEqual(encodeSafetensors(tensors, { ...f.metadata }), bytes, rel);
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers for generated files
// ---------------------------------------------------------------------------------------------

const tmp = await Deno.makeTempDir({ prefix: "l2d_formats_test_" });
let fileCounter = 0;

async function tmpFile(bytes: Uint8Array, ext: string): Promise<string> {
  const p = join(tmp, `f${fileCounter++}${ext}`);
  await Deno.writeFile(p, bytes);
  return p;
}

/** Asserts that `fn` rejects with a CheckpointError whose message matches `re`. */
async function rejectsCheckpoint(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${e}`);
    assert.equal(e.name, "CheckpointError");
    assert.match(e.message, re);
    return true;
  });
}

/** Opens `bytes` as a file through openCheckpoint and reads every tensor. */
async function openAndReadAll(bytes: Uint8Array, ext: string): Promise<CheckpointFile> {
  const f = await openCheckpoint(await tmpFile(bytes, ext));
  try {
    for (const n of f.names) await f.read(n);
  } finally {
    f.close();
  }
  return f;
}

function f32(values: number[], shape: number[]): HostTensor {
  const a = new Float32Array(values);
  return { dtype: "F32", shape, data: new Uint8Array(a.buffer) };
}

/** A safetensors file from a literal header (after JSON.stringify) and data area. */
function rawSafetensors(header: unknown, data = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const h = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

// ---------------------------------------------------------------------------------------------
// safetensors round trips and hostile headers
// ---------------------------------------------------------------------------------------------

Deno.test("safetensors: write/read round trip (dtypes, scalar, empty, integer-like names)", async () => {
  const i64 = new BigInt64Array([-1n, 2n ** 40n]);
  const tensors: Record<string, HostTensor> = {
    "b.weight": f32([1, 2, 3, 4, 5, 6], [2, 3]),
    "10": f32([7], []),
    "2": { dtype: "I64", shape: [2], data: new Uint8Array(i64.buffer) },
    "a.mask": { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
    "half": { dtype: "F16", shape: [1], data: new Uint8Array([0x00, 0x3c]) },
    "empty": { dtype: "U8", shape: [0, 5], data: new Uint8Array(0) },
  };
  const path = join(tmp, "roundtrip.safetensors");
  await writeSafetensors(path, tensors, { format: "pt" });
  const bytes = await Deno.readFile(path);
  assert.deepEqual(bytes, encodeSafetensors(tensors, { format: "pt" }));
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  for (const f of [await openSafetensors(path), parseSafetensorsBytes(bytes)]) {
    using _ = f;
    assert.deepEqual(f.metadata, { format: "pt" });
    // File order is data order, which the writer makes sorted-name order.
    assert.deepEqual([...f.names], ["10", "2", "a.mask", "b.weight", "empty", "half"]);
    for (const [n, t] of Object.entries(tensors)) assert.deepEqual(await f.read(n), t, n);
    assert.deepEqual(f.info("b.weight"), { dtype: "F32", shape: [2, 3], byteLength: 24, begin: 23, end: 47 });
  }
  assert.throws(() => encodeSafetensors({ x: f32([1, 2], [3]) }), CheckpointError);
});

Deno.test("safetensors: concurrent reads and errors after close / unknown names", async () => {
  const tensors: Record<string, HostTensor> = {};
  for (let i = 0; i < 20; i++) {
    tensors[`t${i}`] = f32(Array.from({ length: 100 }, (_, j) => i * 1000 + j), [100]);
  }
  const path = await tmpFile(encodeSafetensors(tensors), ".safetensors");
  const f = await openSafetensors(path);
  const all = await Promise.all(f.names.map((n) => f.read(n)));
  all.forEach((t, i) => assert.deepEqual(t, tensors[f.names[i]!]));
  assert.throws(() => f.info("nope"), /has no tensor "nope"/);
  f.close();
  f.close();
  await rejectsCheckpoint(() => f.read("t0"), /closed/);
});

Deno.test("safetensors: hostile and broken files fail with CheckpointError", async () => {
  const good = encodeSafetensors({ a: f32([1, 2, 3, 4], [4]), b: f32([5, 6], [2]) });
  const goodHeaderLen = Number(new DataView(good.buffer).getBigUint64(0, true));
  const entry = (dtype: unknown, shape: unknown, offsets: unknown) => ({
    dtype,
    shape,
    data_offsets: offsets,
  });
  const data8 = new Uint8Array(8);
  const cases: [string, Uint8Array, RegExp][] = [
    ["shorter than 8 bytes", new Uint8Array([1, 2, 3]), /truncated/],
    ["header cut", good.subarray(0, 8 + goodHeaderLen - 5), /truncated.*header/],
    ["data cut", good.subarray(0, good.length - 3), /past the end of the data area/],
    ["header length 2^62", rawSafetensors({}, data8, 2n ** 62n), /header of \d+ bytes \(limit/],
    ["header length past EOF", rawSafetensors({}, data8, 4096n), /truncated/],
    ["non-JSON header", rawSafetensors("{not json!", data8), /not valid UTF-8 JSON/],
    [
      "non-UTF-8 header",
      rawSafetensors("{}", data8).map((b, i) => (i === 8 ? 0xff : b)),
      /not valid UTF-8 JSON/,
    ],
    ["JSON array header", rawSafetensors("[1,2]"), /not a JSON object/],
    [
      "offsets past end",
      rawSafetensors({ a: entry("F32", [2], [0, 8]), b: entry("F32", [2], [8, 16]) }, data8),
      /past the end/,
    ],
    [
      "overlap",
      rawSafetensors({ a: entry("F32", [2], [0, 8]), b: entry("F32", [1], [4, 8]) }, data8),
      /overlaps/,
    ],
    ["negative offset", rawSafetensors({ a: entry("F32", [1], [-4, 0]) }, data8), /invalid data offset -4/],
    [
      "non-integer offset",
      rawSafetensors({ a: entry("F32", [1], [0.5, 4.5]) }, data8),
      /invalid data offset 0.5/,
    ],
    ["string offset", rawSafetensors({ a: entry("F32", [1], ["0", "4"]) }, data8), /invalid data offset "0"/],
    ["end before begin", rawSafetensors({ a: entry("U8", [0], [4, 0]) }, data8), /end before they begin/],
    ["missing offsets", rawSafetensors({ a: { dtype: "F32", shape: [1] } }, data8), /data_offsets/],
    [
      "size mismatch",
      rawSafetensors({ a: entry("F32", [1], [0, 8]) }, data8),
      /spans 8 bytes but F32 \[1\] needs 4/,
    ],
    [
      "2^60 elements",
      rawSafetensors({ a: entry("F32", [2 ** 30, 2 ** 30], [0, 8]) }, data8),
      /absurd shape|needs/,
    ],
    ["dimension 2^60", rawSafetensors({ a: entry("F32", [2 ** 60], [0, 8]) }, data8), /invalid dimension/],
    ["negative dimension", rawSafetensors({ a: entry("F32", [-1], [0, 0]) }, data8), /invalid dimension -1/],
    ["unknown dtype", rawSafetensors({ a: entry("F64", [1], [0, 8]) }, data8), /unsupported dtype "F64"/],
    ["entry not an object", rawSafetensors({ a: 5 }, data8), /not an object/],
    ["metadata not strings", rawSafetensors({ __metadata__: { n: 1 } }, data8), /non-string metadata "n"/],
  ];
  for (const [what, bytes, re] of cases) {
    await rejectsCheckpoint(async () => await openSafetensors(await tmpFile(bytes, ".safetensors")), re)
      .catch(
        (e) => assert.fail(`${what}: ${e}`),
      );
    assert.throws(
      () => parseSafetensorsBytes(bytes, what),
      (e: unknown) => e instanceof CheckpointError,
      what,
    );
  }
  await rejectsCheckpoint(
    () => openSafetensors(join(tmp, "does-not-exist.safetensors")),
    /Cannot open checkpoint/,
  );
});

// ---------------------------------------------------------------------------------------------
// torch.save zip files (generated)
// ---------------------------------------------------------------------------------------------

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const spec = (o: Partial<TorchTensorSpec> & { name: string }): TorchTensorSpec => ({
  key: "0",
  storageType: "FloatStorage",
  storageNumel: 6,
  offset: 0,
  shape: [2, 3],
  stride: [3, 1],
  ...o,
});

Deno.test("torch zip: tensors, views, dtypes, nested dicts, ZIP64", async () => {
  const storage0 = f32Bytes([0, 1, 2, 3, 4, 5]);
  const f64 = new Uint8Array(new Float64Array([0.5, -2]).buffer);
  const i64 = new Uint8Array(new BigInt64Array([7n, -8n]).buffer);
  const f16 = new Uint8Array([0x00, 0x3c, 0x00, 0xc0]); // 1, -2
  const tensors = [
    spec({ name: "w" }),
    spec({ name: "w_t", shape: [3, 2], stride: [1, 3] }), // transposed view of the same storage
    spec({ name: "row1", offset: 3, shape: [3], stride: [1] }),
    spec({ name: "scalar", offset: 5, shape: [], stride: [] }),
    spec({ name: "d", key: "1", storageType: "DoubleStorage", storageNumel: 2, shape: [2], stride: [1] }),
    spec({ name: "ids", key: "2", storageType: "LongStorage", storageNumel: 2, shape: [2], stride: [1] }),
    spec({ name: "h", key: "3", storageType: "HalfStorage", storageNumel: 2, shape: [2, 1], stride: [1, 1] }),
  ];
  const storages = { "0": storage0, "1": f64, "2": i64, "3": f16 };
  for (const zip64 of [false, true]) {
    for (const wrap of [false, true]) {
      const path = await tmpFile(
        await buildTorchZip("archive", stateDictPickle(tensors, wrap), storages, { zip64 }),
        ".pt",
      );
      using f = await openCheckpoint(path);
      assert.equal(f.format, "torch");
      assert.deepEqual([...f.names], tensors.map((t) => t.name));
      const get = async (n: string) => Array.from(toFloat32(await f.read(n)));
      assert.deepEqual(await get("w"), [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(await get("w_t"), [0, 3, 1, 4, 2, 5]);
      assert.deepEqual(await get("row1"), [3, 4, 5]);
      assert.deepEqual(await f.read("scalar"), { dtype: "F32", shape: [], data: f32Bytes([5]) });
      assert.deepEqual(f.info("d"), { dtype: "F32", shape: [2], byteLength: 8 });
      assert.deepEqual(await get("d"), [0.5, -2]);
      assert.deepEqual(await f.read("ids"), { dtype: "I64", shape: [2], data: i64 });
      assert.deepEqual(await get("h"), [1, -2]);
      if (wrap) assert.equal((f as TorchCheckpointFile).root instanceof Map, true);
    }
  }
  // Nested dicts are flattened with ".".
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT).str("step").int(3).op(OP.SETITEM);
  w.str("model").op(OP.EMPTY_DICT).str("enc").op(OP.EMPTY_DICT);
  writeTensor(w.str("w"), spec({ name: "w" })).op(OP.SETITEM).op(OP.SETITEM).op(OP.SETITEM).stop();
  using nested = await openTorchCheckpoint(
    await tmpFile(await buildTorchZip("n", w.bytesOut(), storages), ".pt"),
  );
  assert.deepEqual([...nested.names], ["model.enc.w"]);
});

/** A torch zip whose data.pkl is `pickle` (storage "0" holds 6 floats). */
async function torchFile(
  pickle: Uint8Array,
  storages: Record<string, Uint8Array> = { "0": f32Bytes([0, 1, 2, 3, 4, 5]) },
) {
  return await tmpFile(await buildTorchZip("archive", pickle, storages), ".pt");
}

const notAllowed = (g: string) =>
  new RegExp(
    `Cannot load checkpoint ".*": it references "${
      g.replace(".", "\\.")
    }", which is not allowed in a weights-only checkpoint`,
  );

Deno.test("torch zip: disallowed globals are refused by name, never called", async () => {
  const gReduce = (m: string, n: string) =>
    new PickleWriter().proto(2).global(m, n).str("echo pwned").op(OP.TUPLE1).op(OP.REDUCE).stop().bytesOut();
  const sReduce = (m: string, n: string) =>
    new PickleWriter().proto(4).stackGlobal(m, n).str("echo pwned").op(OP.TUPLE1).op(OP.REDUCE).stop()
      .bytesOut();
  for (
    const [m, n] of [["os", "system"], ["builtins", "eval"], ["subprocess", "Popen"], ["posix", "system"]]
  ) {
    await rejectsCheckpoint(
      async () => openTorchCheckpoint(await torchFile(gReduce(m!, n!))),
      notAllowed(`${m}.${n}`),
    );
    await rejectsCheckpoint(
      async () => openTorchCheckpoint(await torchFile(sReduce(m!, n!))),
      notAllowed(`${m}.${n}`),
    );
  }
  // NEWOBJ on a disallowed class, and a tensor whose storage type is not a torch storage.
  const newobj = new PickleWriter().proto(2).global("subprocess", "Popen").op(OP.EMPTY_TUPLE).op(OP.NEWOBJ)
    .stop();
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(newobj.bytesOut())),
    notAllowed("subprocess.Popen"),
  );
  const badStorage = stateDictPickle([spec({ name: "w", storageType: "CudaFloatStorage" })]);
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(badStorage)),
    notAllowed("torch.CudaFloatStorage"),
  );
  // An allowed global used as a callable it is not (a storage class) is refused too.
  const callStorage = new PickleWriter().proto(2).global("torch", "FloatStorage").op(OP.EMPTY_TUPLE).op(
    OP.REDUCE,
  ).stop();
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(callStorage.bytesOut())),
    /cannot be constructed/,
  );
  assert.ok(!ALLOWED_GLOBALS.has("os.system") && ALLOWED_GLOBALS.has("torch._utils._rebuild_tensor_v2"));
});

Deno.test("torch zip: recursive, deep and oversized structures are refused quickly", async () => {
  // d["self"] = d
  const selfRef = new PickleWriter().proto(2).op(OP.EMPTY_DICT).binput(0).str("self").binget(0).op(OP.SETITEM)
    .stop();
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(selfRef.bytesOut())),
    /recursive structure/,
  );
  // l.append(l)
  const selfList = new PickleWriter().proto(2).op(OP.EMPTY_LIST).binput(0).binget(0).op(OP.APPEND).stop();
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(selfList.bytesOut())),
    /contains itself/,
  );
  // 100k nested dicts
  const deep = new PickleWriter().proto(2).op(OP.EMPTY_DICT);
  for (let i = 0; i < 100_000; i++) deep.str("a").op(OP.EMPTY_DICT);
  for (let i = 0; i < 100_000; i++) deep.op(OP.SETITEM);
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(deep.stop().bytesOut())),
    /nests dicts more than/,
  );
  // "Billion laughs": d_k = {a: d_{k-1}, b: d_{k-1}}, 2^40 paths through 40 dicts.
  const laughs = new PickleWriter().proto(2).op(OP.EMPTY_DICT).binput(0).op(OP.POP);
  for (let k = 1; k <= 40; k++) {
    laughs.op(OP.EMPTY_DICT).op(OP.MARK).str("a").binget(k - 1).str("b").binget(k - 1).op(OP.SETITEMS).binput(
      k,
    );
    if (k < 40) laughs.op(OP.POP);
  }
  const t0 = performance.now();
  await rejectsCheckpoint(
    async () => openTorchCheckpoint(await torchFile(laughs.stop().bytesOut())),
    /more than \d+ entries|names longer than \d+ characters/,
  );
  assert.ok(performance.now() - t0 < 5000);
  // Object limit of the unpickler itself.
  const many = new PickleWriter().proto(2).op(OP.MARK);
  for (let i = 0; i < 1000; i++) many.op(OP.NONE);
  many.op(OP.TUPLE).stop();
  assert.throws(() => unpickle(many.bytesOut(), { label: "x", maxObjects: 100 }), /more than 100 objects/);
});

Deno.test("torch zip: malformed pickles fail with CheckpointError", async () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "BINUNICODE longer than the file",
      new PickleWriter().proto(2).strWithLength("abc", 0x7fffffff).stop().bytesOut(),
      /more than the \d+ bytes left/,
    ],
    ["no STOP", new PickleWriter().proto(2).op(OP.EMPTY_DICT).bytesOut(), /no STOP/],
    ["stack underflow", new PickleWriter().proto(2).op(OP.SETITEM).stop().bytesOut(), /stack underflow/],
    [
      "protocol 0 INT opcode",
      new PickleWriter().proto(2).raw(0x49, 0x31, 0x0a).stop().bytesOut(),
      /unsupported opcode 0x49/,
    ],
    ["INST opcode", new PickleWriter().raw(0x69).stop().bytesOut(), /INST\/OBJ/],
    ["missing memo", new PickleWriter().proto(2).binget(7).stop().bytesOut(), /missing memo entry 7/],
    [
      "open MARK",
      new PickleWriter().proto(2).op(OP.MARK).op(OP.EMPTY_DICT).stop().bytesOut(),
      /MARK that is never closed/,
    ],
    [
      "top level not a dict",
      new PickleWriter().proto(2).op(OP.EMPTY_LIST).stop().bytesOut(),
      /not hold a dict/,
    ],
    [
      "GLOBAL without newline",
      new PickleWriter().proto(2).raw(0x63, 0x6f, 0x73).bytesOut(),
      /terminating newline/,
    ],
    [
      "huge LONG4",
      new PickleWriter().proto(2).raw(0x8b, 0, 0, 1, 0).stop().bytesOut(),
      /integer of 65536 bytes/,
    ],
    [
      "FRAME too long",
      new PickleWriter().proto(4).raw(OP.FRAME, 0xff, 0xff, 0, 0, 0, 0, 0, 0).stop().bytesOut(),
      /FRAME longer/,
    ],
    [
      "persistent id not a storage",
      new PickleWriter().proto(2).str("x").op(OP.BINPERSID).stop().bytesOut(),
      /persistent id/,
    ],
  ];
  for (const [what, pkl, re] of cases) {
    await rejectsCheckpoint(async () => openTorchCheckpoint(await torchFile(pkl)), re).catch((e) =>
      assert.fail(`${what}: ${e}`)
    );
  }
});

Deno.test("torch zip: storage and tensor bounds are checked against the archive", async () => {
  const cases: [string, TorchTensorSpec, RegExp][] = [
    ["offset past the storage", spec({ name: "w", offset: 4 }), /runs past the end of storage "0"/],
    ["stride past the storage", spec({ name: "w", stride: [4, 1] }), /runs past the end of storage/],
    [
      "storage larger than its entry",
      spec({ name: "w", storageNumel: 1000 }),
      /declares 1000 elements but its entry holds only 24 bytes/,
    ],
    ["missing storage entry", spec({ name: "w", key: "9" }), /lacks the data of storage "9"/],
    ["negative dimension", spec({ name: "w", shape: [-2, 3] }), /invalid size/],
    [
      "absurd shape",
      spec({ name: "w", shape: [2 ** 31 - 1, 2 ** 31 - 1], stride: [1, 1] }),
      /has a tensor with an absurd shape/,
    ],
    [
      "huge view of a small storage",
      spec({ name: "w", shape: [1000, 1000], stride: [1000, 1] }),
      /runs past the end/,
    ],
    [
      "shape overflow",
      spec({ name: "w", shape: [2 ** 40, 2 ** 40], stride: [1, 1] }),
      /has a tensor with an absurd shape \[/,
    ],
  ];
  for (const [what, t, re] of cases) {
    await rejectsCheckpoint(async () => openTorchCheckpoint(await torchFile(stateDictPickle([t]))), re).catch(
      (e) => assert.fail(`${what}: ${e}`),
    );
  }
});

Deno.test("torch zip: broken archives fail with CheckpointError", async () => {
  const pkl = stateDictPickle([spec({ name: "w" })]);
  const storages = { "0": f32Bytes([0, 1, 2, 3, 4, 5]) };
  const zip = await buildTorchZip("archive", pkl, storages);
  const cases: [string, Uint8Array, RegExp][] = [
    ["truncated zip", zip.subarray(0, Math.floor(zip.length / 2)), /neither|truncated|not a ZIP/],
    ["truncated end record", zip.subarray(0, zip.length - 4), /truncated|not a ZIP/],
    [
      "compressed storage",
      await buildTorchZip("archive", pkl, storages, { storageMethod: 8 }),
      /is compressed \(method 8\)/,
    ],
    ["compressed data.pkl", await buildZip([{ name: "a/data.pkl", data: pkl, method: 8 }]), /is compressed/],
    ["encrypted entry", await buildZip([{ name: "a/data.pkl", data: pkl, flags: 1 }]), /encrypted/],
    ["no data.pkl", await buildZip([{ name: "a/other.txt", data: pkl }]), /not a torch\.save file/],
    [
      "legacy torch format",
      new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]),
      /legacy \(non-zip\) torch format.*_use_new_zipfile_serialization=True/,
    ],
    ["garbage", new TextEncoder().encode("hello, this is not a model at all"), /neither safetensors nor/],
    ["empty file", new Uint8Array(0), /neither safetensors nor/],
  ];
  // A central directory that points past the end of the file.
  const badCd = zip.slice();
  const eocd = badCd.length - 22;
  new DataView(badCd.buffer).setUint32(eocd + 16, 0x7fffff00, true);
  cases.push(["central directory past the end", badCd, /central directory lies past the end/]);
  // A local header offset that points at garbage.
  const badLocal = zip.slice();
  const cdOffset = new DataView(badLocal.buffer).getUint32(eocd + 16, true);
  new DataView(badLocal.buffer).setUint32(cdOffset + 42, 5, true);
  cases.push(["bad local header", badLocal, /no local file header|local header/]);
  for (const [what, bytes, re] of cases) {
    await rejectsCheckpoint(() => openAndReadAll(bytes, ".pt"), re).catch((e) => assert.fail(`${what}: ${e}`));
  }
  await rejectsCheckpoint(async () => openTorchCheckpoint(await tmpFile(cases[6]![1], ".pt")), /legacy/);
});

Deno.test("unpickle: value mapping of allowed constructs", () => {
  const w = new PickleWriter().proto(2).op(OP.MARK);
  w.int(2n ** 40n).int(-5).int(2n ** 70n).float(1.5).op(OP.NONE).op(OP.NEWTRUE).bytes(new Uint8Array([1, 2]));
  w.global("_codecs", "encode").str("\u00ff\u0001").str("latin1").op(OP.TUPLE2).op(OP.REDUCE);
  w.global("builtins", "set").op(OP.EMPTY_LIST).int(1).op(OP.APPEND).op(OP.TUPLE1).op(OP.REDUCE);
  w.global("torch", "Size").op(OP.MARK).int(2).int(3).op(OP.TUPLE).op(OP.TUPLE1).op(OP.REDUCE);
  // OrderedDict with BUILD state (like a state dict's _metadata) then items.
  w.global("collections", "OrderedDict").op(OP.EMPTY_TUPLE).op(OP.REDUCE).op(OP.EMPTY_DICT).op(OP.BUILD);
  w.str("k").int(9).op(OP.SETITEM);
  w.op(OP.LIST).stop();
  const v = unpickle(w.bytesOut(), { label: "mem" }) as unknown[];
  assert.deepEqual(v.slice(0, 7), [2 ** 40, -5, 2n ** 70n, 1.5, null, true, new Uint8Array([1, 2])]);
  assert.deepEqual(v[7], new Uint8Array([255, 1]));
  assert.deepEqual(v[8], new Set([1]));
  assert.deepEqual(v[9], [2, 3]);
  assert.ok(Object.isFrozen(v[9]));
  assert.deepEqual(v[10], new Map([["k", 9]]));
  assert.throws(
    () =>
      unpickle(new PickleWriter().proto(2).op(OP.EMPTY_TUPLE).int(1).op(OP.APPEND).stop().bytesOut(), {
        label: "t",
      }),
    /not a list/,
  );
});

Deno.test("detectFormat", () => {
  assert.equal(detectFormat(new Uint8Array([0x50, 0x4b, 3, 4])), "torch");
  assert.equal(detectFormat(encodeSafetensors({})), "safetensors");
  assert.equal(detectFormat(new Uint8Array([0x80, 2, 0x8a])), "torch-legacy");
  assert.equal(detectFormat(new Uint8Array([1, 2])), "unknown");
});

Deno.test({
  name: "cleanup temp dir",
  fn: async () => {
    await Deno.remove(tmp, { recursive: true });
  },
});
