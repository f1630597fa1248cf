/**
 * Issue 12, engine files and the TS API: header fields outside `tensors` are schema-checked
 * (EngineFileError, never TypeError/RangeError/SyntaxError), a corrupt tokenizer blob is an
 * EngineFileError, FIFOs are refused before opening, prompts are inserted literally into the
 * template, stream options are checked before any native call, and tensor names that UTF-8 cannot
 * carry unchanged never reach the native map.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  EngineFileError,
  type EngineHeaderInit,
  EngineWriter,
  openEngine,
  type TensorPlan,
} from "../engines/format.ts";
import { applyPromptTemplate, Engine } from "../ffi/engine.ts";
import { CheckpointError, encodeSafetensors } from "../ffi/formats/mod.ts";
import { TensorMap } from "../ffi/native.ts";
import { type PromptEncoder, Stream, type StreamModels, type StreamOptions } from "../ffi/stream.ts";
import { loadCheckpointInto } from "../ffi/weights.ts";

const GOOD: EngineHeaderInit = {
  target: "cpu",
  components: { unet: { block_out_channels: [4] } },
  style: { clip_skip: 2, prompt_template: "x, {}", t_index_list: [32, 45], num_inference_steps: 50 },
  provenance: [{ file: "a.safetensors", role: "unet", bytes: 3, sha256: "0".repeat(64) }],
};

/** Writes an engine with header fields overridden by `edit` (checksums are valid: anyone can recompute them). */
async function engineWith(dir: string, name: string, edit: (h: Record<string, unknown>) => void): Promise<string> {
  const init = structuredClone(GOOD) as unknown as Record<string, unknown>;
  edit(init);
  const path = join(dir, name);
  const plans: TensorPlan[] = [{ name: "unet.a", dtype: "F32", shape: [1] }];
  const w = await EngineWriter.create(path, init as unknown as EngineHeaderInit, plans);
  await w.write("unet.a", new Uint8Array(4));
  await w.finish();
  return path;
}

Deno.test("engine header: every field outside tensors is schema-checked with EngineFileError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const style = (h: Record<string, unknown>) => h.style as Record<string, unknown>;
    const cases: [string, (h: Record<string, unknown>) => void, RegExp][] = [
      ["template", (h) => style(h).prompt_template = 5, /style\.prompt_template of 5/],
      ["t_index not array", (h) => style(h).t_index_list = "32", /style\.t_index_list/],
      ["t_index out of range", (h) => style(h).t_index_list = [32, 50], /style\.t_index_list of \[32,50\]/],
      ["t_index decreasing", (h) => style(h).t_index_list = [45, 32], /style\.t_index_list/],
      ["t_index empty", (h) => style(h).t_index_list = [], /style\.t_index_list/],
      ["t_index fraction", (h) => style(h).t_index_list = [1.5], /style\.t_index_list/],
      ["clip_skip fraction", (h) => style(h).clip_skip = 1.5, /style\.clip_skip of 1\.5/],
      ["clip_skip 2^32+2", (h) => style(h).clip_skip = 2 ** 32 + 2, /style\.clip_skip/],
      ["steps", (h) => style(h).num_inference_steps = 0, /style\.num_inference_steps of 0/],
      ["style null", (h) => h.style = null, /"style" that is not an object/],
      ["provenance", (h) => h.provenance = {}, /"provenance" that is not a list/],
      ["provenance entry", (h) => h.provenance = [5], /provenance\[0\]/],
      ["provenance bytes", (h) => (h.provenance as Record<string, unknown>[])[0]!.bytes = -1, /provenance\[0\]/],
      ["components null", (h) => h.components = null, /"components" that is not an object/],
      ["component config", (h) => h.components = { unet: 3 }, /component "unet"/],
      ["generator", (h) => h.generator = 42, /"generator" that is not a string/],
      ["created", (h) => h.created = [], /"created" that is not a string/],
    ];
    for (const [name, edit, re] of cases) {
      const path = await engineWith(dir, `${name.replaceAll(" ", "_")}.l2de`, edit);
      await assert.rejects(
        openEngine(path),
        (e: unknown) => e instanceof EngineFileError && /has a header with/.test(e.message) && re.test(e.message),
        name,
      );
    }
    // The schema admits what the writers produce (null template, clip_skip -1, one step).
    const ok = await engineWith(dir, "ok.l2de", (h) => {
      Object.assign(style(h), { prompt_template: null, clip_skip: -1, t_index_list: [0], num_inference_steps: 1 });
    });
    (await openEngine(ok)).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("engine header: tensor names with NUL or unpaired surrogates are EngineFileErrors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [i, bad] of ["unet.a\0b", "unet.\ud800"].entries()) {
      const path = join(dir, `n${i}.l2de`);
      const w = await EngineWriter.create(path, GOOD, [{ name: bad, dtype: "F32", shape: [1] }]);
      await w.write(bad, new Uint8Array(4));
      await w.finish();
      await assert.rejects(
        openEngine(path),
        (e: unknown) => e instanceof EngineFileError && /not a valid name/.test(e.message),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "openEngine refuses a FIFO before opening it",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const fifo = join(dir, "engine.l2de");
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 2000));
    try {
      const outcome = await Promise.race([openEngine(fifo).then(() => "opened", (e) => e), timeout]);
      if (outcome === "timeout") {
        (await Deno.open(fifo, { write: true })).close();
        assert.fail("openEngine blocked on a FIFO");
      }
      assert.ok(outcome instanceof EngineFileError && /not a regular file/.test(outcome.message), `got ${outcome}`);
    } finally {
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("prompt template: the prompt is inserted literally ($ patterns are not expanded)", () => {
  assert.equal(applyPromptTemplate("art, {}", "price $$5"), "art, price $$5");
  assert.equal(applyPromptTemplate("a {} b", "$& $` $' $1"), "a $& $` $' $1 b");
  assert.equal(applyPromptTemplate("no slot", "x"), "no slot");
});

/** An engine stand-in whose models throw when touched: proves options fail before any native call. */
const NO_NATIVE: StreamModels = new Proxy({} as StreamModels, {
  get(_t, key) {
    if (key === "scheduler") return {};
    throw new Error(`native model "${String(key)}" reached`);
  },
});
const ENCODER: PromptEncoder = {
  style: { t_index_list: [32, 45], num_inference_steps: 50 },
  encodePrompt: () => Promise.reject(new Error("encodePrompt reached")),
};

Deno.test("stream options: integers in range and finite numbers, checked before any native call", async () => {
  const base: StreamOptions = { prompt: "x", width: 64, height: 64 };
  const cases: [Record<string, unknown>, ErrorConstructor, RegExp][] = [
    [{ steps: 2 ** 32 + 2, strength: 0.5 }, RangeError, /steps must be an integer in 1\.\.16/],
    [{ strength: 0.5, steps: 1.5 }, RangeError, /steps/],
    [{ strength: NaN }, RangeError, /strength/],
    [{ numInferenceSteps: 2 ** 32 + 50 }, RangeError, /numInferenceSteps/],
    [{ numInferenceSteps: NaN }, RangeError, /numInferenceSteps/],
    [{ tIndexList: [2 ** 32 + 2] }, RangeError, /tIndexList\[0\]/],
    [{ tIndexList: [10, 5] }, RangeError, /strictly increasing/],
    [{ tIndexList: [] }, RangeError, /1\.\.16 entries/],
    [{ tIndexList: "1,2" }, TypeError, /tIndexList must be an array/],
    [{ similarImageFilter: { threshold: NaN } }, RangeError, /threshold must be in 0\.\.1, got NaN/],
    [{ similarImageFilter: { threshold: Infinity } }, RangeError, /threshold/],
    [{ similarImageFilter: { maxSkipFrames: -1 } }, RangeError, /maxSkipFrames must be an integer in 0\.\./],
    [{ similarImageFilter: { maxSkipFrames: 2 ** 32 } }, RangeError, /maxSkipFrames/],
    [{ similarImageFilter: { maxSkipFrames: 0.5 } }, RangeError, /maxSkipFrames/],
    [{ similarImageFilter: "on" }, TypeError, /similarImageFilter/],
    [{ clipSkip: 2 ** 32 + 2 }, RangeError, /clipSkip/],
    [{ clipSkip: "2" }, TypeError, /clipSkip/],
    [{ seed: 1.5 }, RangeError, /seed/],
    [{ width: 2 ** 32 + 64 }, RangeError, /width/],
    [{ width: NaN }, RangeError, /width/],
    [{ height: "64" }, TypeError, /height/],
    [{ debug: 1 }, TypeError, /debug/],
    [{ applyTemplate: "no" }, TypeError, /applyTemplate/],
  ];
  for (const [extra, type, re] of cases) {
    const options = { ...base, ...extra } as StreamOptions;
    await assert.rejects(
      Stream.create(ENCODER, NO_NATIVE, options),
      (e: unknown) => e instanceof type && re.test((e as Error).message),
      JSON.stringify(extra, (_k, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v),
    );
  }
  // Valid options pass the checks and reach the native layer (here: the stand-in's models).
  await assert.rejects(
    Stream.create(ENCODER, NO_NATIVE, { ...base, similarImageFilter: { threshold: 0.9, maxSkipFrames: 0 } }),
    /native model "unet" reached/,
  );
});

Deno.test("tensor names: unpaired surrogates and NULs never reach the native map", async () => {
  using map = new TensorMap();
  const t = { dtype: "F32" as const, shape: [1], data: new Uint8Array(4) };
  // Before: both became "w\uFFFD" natively, the second silently replacing the first.
  assert.throws(() => map.set("w\ud800", t), TypeError);
  assert.throws(() => map.set("w\udc00", t), TypeError);
  assert.deepEqual(map.names(), []);
  // A rename producing a NUL is the checkpoint's error, not a TypeError from the FFI layer.
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await Deno.writeFile(path, encodeSafetensors({ w: t }));
  await assert.rejects(loadCheckpointInto(map, path, { rename: (n) => `${n}\0x` }), CheckpointError);
  await assert.rejects(loadCheckpointInto(map, path, { rename: (n) => `${n}\ud800` }), CheckpointError);
  assert.deepEqual(await loadCheckpointInto(map, path), ["w"]);
});

Deno.test("engine: a corrupt tokenizer blob is an EngineFileError; '$$' prompts are encoded literally", async () => {
  using engine = await Engine.loadDefault({ device: "cpu", threads: 2 });
  // The template is applied literally: encoding "price $$5" equals encoding the literal full text.
  const template = engine.style.prompt_template!;
  const withTemplate = await engine.encodePrompt("price $$5");
  const literal = await engine.encodePrompt(template.split("{}").join("price $$5"), { applyTemplate: false });
  assert.deepEqual(withTemplate.data, literal.data);
  const expanded = await engine.encodePrompt(template.split("{}").join("price $5"), { applyTemplate: false });
  assert.notDeepEqual(withTemplate.data, expanded.data);

  // Copy the engine with a corrupt vocab.json blob (valid checksums: anyone can recompute them).
  const dir = await Deno.makeTempDir();
  try {
    using src = await openEngine(engine.path);
    for (const [name, blob] of [["vocab", "{not json"], ["special", "null"]] as const) {
      const target = name === "vocab" ? "tokenizer.vocab.json" : "tokenizer.special_tokens_map.json";
      if (!src.has(target)) continue;
      const out = join(dir, `${name}.l2de`);
      const bytes = new TextEncoder().encode(blob);
      const plans = src.header.tensors.map((t) =>
        t.name === target ? { name: t.name, dtype: "U8" as const, shape: [bytes.byteLength] } : t
      );
      const { tensors: _, format_version: __, ...init } = src.header;
      const w = await EngineWriter.create(out, init, plans);
      for (const t of plans) await w.write(t.name, t.name === target ? bytes : (await src.read(t.name)).data);
      await w.finish();
      await assert.rejects(
        Engine.load(out, { device: "cpu", threads: 2 }),
        (e: unknown) => e instanceof EngineFileError && /corrupt tokenizer/.test(e.message),
        name,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
