/**
 * Engine file format (engines/format.ts): round trip, alignment, loadInto, and every refusal the loader
 * promises (truncated, corrupt data, corrupt header, wrong version, wrong target, absurd header, bad magic).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkEngineTarget,
  ENGINE_ALIGN,
  EngineFileError,
  type EngineHeaderInit,
  EngineWriter,
  openEngine,
  parseTarget,
} from "../engines/format.ts";
import { convertTensor } from "../engines/build.ts";
import { fromFloat32, toFloat32 } from "../ffi/host_tensor.ts";
import { Engine } from "../ffi/engine.ts";
import { TensorMap } from "../ffi/native.ts";

const INIT: EngineHeaderInit = {
  target: "sm_89",
  components: { unet: { block_out_channels: [4] } },
  style: { clip_skip: 2, prompt_template: "x, {}", t_index_list: [32, 45], num_inference_steps: 50 },
  provenance: [{ file: "a.safetensors", role: "unet", bytes: 3, sha256: "0".repeat(64) }],
};

async function writeSample(dir: string, target = "sm_89"): Promise<string> {
  const path = join(dir, "e.l2de");
  const a = new Float32Array([1, -2, 3.5, 0.25, 7]);
  const w = await EngineWriter.create(path, { ...INIT, target: parseTarget(target) }, [
    { name: "unet.a", dtype: "F16", shape: [5] },
    { name: "unet.b", dtype: "F32", shape: [2, 3] },
    { name: "tokenizer.vocab.json", dtype: "U8", shape: [4] },
  ]);
  await w.write("unet.a", convertTensor(fromFloat32(a, [5]), "F16"));
  await w.write("unet.b", new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer));
  await w.write("tokenizer.vocab.json", new TextEncoder().encode('{""}'));
  await w.finish();
  return path;
}

async function expectError(path: string, re: RegExp, options = {}) {
  await assert.rejects(async () => {
    using e = await openEngine(path, options);
    for (const n of e.names) await e.read(n);
  }, (err: unknown) => err instanceof EngineFileError && re.test((err as Error).message));
}

Deno.test("engine round trip: header, dtypes, alignment, loadInto, verify", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await writeSample(dir);
    using e = await openEngine(path, { target: "sm_89", verify: true });
    assert.equal(e.target, "sm_89");
    assert.deepEqual(e.names, ["unet.a", "unet.b", "tokenizer.vocab.json"]);
    assert.deepEqual(e.header.style.t_index_list, [32, 45]);
    assert.equal(e.config("unet").block_out_channels?.toString(), "4");
    for (const n of e.names) assert.equal(e.fileOffset(n) % ENGINE_ALIGN, 0);
    const a = await e.read("unet.a");
    assert.equal(a.dtype, "F16");
    assert.deepEqual([...toFloat32(a)], [1, -2, 3.5, 0.25, 7]);
    assert.deepEqual([...toFloat32(await e.read("unet.b"))], [1, 2, 3, 4, 5, 6]);
    assert.equal(await e.text("tokenizer.vocab.json"), '{""}');
    using map = new TensorMap();
    assert.deepEqual(await e.loadInto(map, "unet."), ["a", "b"]);
    assert.deepEqual(map.info("b").shape, [2, 3]);
    assert.throws(() => e.entry("nope"), EngineFileError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("engine refusals: truncated, corrupt, wrong version/target, absurd header, bad magic, partial", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await writeSample(dir);
    const good = await Deno.readFile(path);
    const variant = async (name: string, edit: (b: Uint8Array) => Uint8Array) => {
      const p = join(dir, name);
      await Deno.writeFile(p, edit(good.slice()));
      return p;
    };
    await expectError(await variant("trunc.l2de", (b) => b.subarray(0, b.length - 100)), /truncated/);
    await expectError(await variant("tiny.l2de", (b) => b.subarray(0, 10)), /truncated/);
    await expectError(await variant("empty.l2de", () => new Uint8Array(0)), /truncated/);
    const dataStart = 16 + new DataView(good.buffer).getUint32(12, true);
    await expectError(await variant("data.l2de", (b) => (b[dataStart + 1] ^= 0x40, b)), /corrupt: tensor "unet.a"/);
    // A corrupt data byte is also found up front with verify: true.
    await assert.rejects(openEngine(join(dir, "data.l2de"), { verify: true }), /corrupt/);
    await expectError(
      await variant("hdr.l2de", (b) => (b[40] ^= 0x01, b)),
      /header does not match its checksum|unreadable/,
    );
    await expectError(
      await variant("ver.l2de", (b) => (new DataView(b.buffer).setUint32(8, 99, true), b)),
      /format version 99/,
    );
    await expectError(
      await variant("absurd.l2de", (b) => (new DataView(b.buffer).setUint32(12, 0xfffffff0, true), b)),
      /absurd header/,
    );
    await expectError(await variant("magic.l2de", (b) => (b[0] = 0x50, b)), /not a live2diff engine/);
    await expectError(await variant("tail.l2de", (b) => (b[b.length - 60] ^= 1, b)), /truncated|extra bytes|checksum/);
    await expectError(path, /built for target "sm_89" but "sm_90"/, { target: "sm_90" });
    await expectError(path, /built for target "sm_89" but "cpu"/, { target: "cpu" });
    await assert.rejects(openEngine(join(dir, "missing.l2de")), EngineFileError);
    assert.throws(() => parseTarget("gpu"), TypeError);
    // An unfinished build leaves only a .partial file.
    const w = await EngineWriter.create(join(dir, "unfinished.l2de"), INIT, [{ name: "x", dtype: "F32", shape: [1] }]);
    await assert.rejects(w.write("y", new Uint8Array(4)), /expected "x"/);
    await assert.rejects(w.write("x", new Uint8Array(3)), /needs 4 bytes/);
    await assert.rejects(w.finish(), /never written/);
    await w.abort();
    await assert.rejects(Deno.stat(join(dir, "unfinished.l2de")));
    await assert.rejects(Deno.stat(join(dir, "unfinished.l2de.partial")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an engine for another kind of machine is an EngineFileError naming both targets and the fix", async () => {
  const isForeign = (re: RegExp) => (err: unknown) => err instanceof EngineFileError && re.test((err as Error).message);
  assert.throws(() => checkEngineTarget("e.l2de", "sm_89", "cpu"), isForeign(/"sm_89".*"cpu".*--target cpu/));
  assert.throws(() => checkEngineTarget("e.l2de", "cpu", "cuda"), isForeign(/"cpu".*CUDA.*--target/));
  checkEngineTarget("e.l2de", "cpu", "cpu");
  checkEngineTarget("e.l2de", "sm_89", "cuda");
  // End to end: Engine.load of a CUDA engine on the CPU backend (refused before any native model is built).
  const dir = await Deno.makeTempDir();
  try {
    const path = await writeSample(dir, "sm_89");
    await assert.rejects(Engine.load(path, { device: "cpu" }), isForeign(/built for target "sm_89".*CPU backend/));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
