/**
 * The per-prompt cross-attention K/V of the UNet (UnetModel::prepare_context): computed once per
 * prompt instead of in every frame's forward. Checked on the CPU backend with the tiny golden model
 * against the eager path (L2D_CONTEXT_KV=0, which projects the context in every forward):
 *  - identical outputs, bit for bit, across prompt switches (a stale cache would keep the old
 *    prompt's K/V), for the unet session and for the full stream (set_prompt mid-stream);
 *  - the work it removes, counted by the session option count_ops: exactly two fewer linear calls
 *    per cross-attention layer and their GEMM FLOPs, every other op unchanged.
 */
import assert from "node:assert/strict";
import { Engine, type Stream } from "../mod.ts";
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../ffi/loaders/unet.ts";
import { Context, Model, type Session, TensorMap } from "../ffi/native.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";
import { buildPipelineFixture } from "./_fixtures/pipeline_engine.ts";

const SWITCH = "L2D_CONTEXT_KV";
Deno.env.delete(SWITCH); // the default path must be the cached one, whatever the caller's environment

/** Runs fn with the per-prompt cache switched off (the native side reads the switch when it prepares). */
async function eager<T>(fn: () => Promise<T>): Promise<T> {
  Deno.env.set(SWITCH, "0");
  try {
    return await fn();
  } finally {
    Deno.env.delete(SWITCH);
  }
}

function readI64(io: TensorMap, name: string): number {
  const t = io.get(name);
  assert.equal(t.dtype, "I64", name);
  return Number(new BigInt64Array(t.data.buffer, t.data.byteOffset, 1)[0]);
}

// ---- the unet session ----

const H = 8, W = 8, L = 77;

const unetFiles = await (async () => {
  const caseJson = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
  const unetDir = goldenPath("models/tiny_sd15/unet");
  const config = unetModelConfig(await readUnetConfig(unetDir), caseJson.unet_additional_kwargs);
  const weights = new TensorMap();
  await loadUnetWeights(weights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
  return { config, weights };
})();
const Cx = unetFiles.weights.info("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight").shape[1]!;

interface Call {
  noise: Float32Array;
  counts: Map<string, number>;
  flops: number;
  /** This call projected the context (it differed from the previous call's) ... */
  prepared: number;
  /** ... into new tensors (else in place: the addresses a captured graph reads stay valid). */
  reallocated: number;
}

function countsOf(io: TensorMap): Map<string, number> {
  const m = new Map<string, number>();
  for (const name of io.names()) if (name.startsWith("op_count_")) m.set(name.slice(9), readI64(io, name));
  return m;
}

/** A stream call of T rows; prompt selects the encoder_hidden_states draw, rows its batch (1 or T). */
async function stream(session: Session, T: number, draw: number, prompt: number, rows = 1): Promise<Call> {
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 11, stream: 1, draw });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 11, stream: 2, draw });
  io.setPhilox("encoder_hidden_states", [rows, L, Cx], { kind: "normal", seed: 11, stream: 3, draw: prompt });
  io.setI64("timesteps", Array.from({ length: T }, (_, i) => 399 - 120 * i), [T]);
  await session.run("stream", io);
  return {
    noise: io.getF32("noise_pred"),
    counts: countsOf(io),
    flops: readI64(io, "gemm_flops"),
    prepared: readI64(io, "context_kv_prepared"),
    reallocated: readI64(io, "context_kv_reallocated"),
  };
}

async function warmup(session: Session, step: number, prompt: number): Promise<Float32Array> {
  using io = new TensorMap();
  io.setPhilox("sample", [1, 4, 8, H, W], { kind: "normal", seed: 11, stream: 4, draw: step });
  io.setPhilox("depth", [1, 4, 8, H, W], { kind: "normal", seed: 11, stream: 5, draw: 0 });
  io.setPhilox("encoder_hidden_states", [1, L, Cx], { kind: "normal", seed: 11, stream: 3, draw: prompt });
  io.setI64("timestep", [399 - 120 * step], [1]);
  io.setI64("step", [step], [1]);
  await session.run("warmup", io);
  return io.getF32("noise_pred");
}

Deno.test("unet session: per-prompt cross-attention K/V give the eager outputs exactly across prompt switches", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "unet", unetFiles.config, unetFiles.weights);
  const T = 2, cfg = { steps: T, latent_height: H, latent_width: W, count_ops: true };
  using fast = model.createSession(cfg);
  using slow = model.createSession(cfg);
  for (let step = 0; step < T; step++) {
    assert.deepEqual(await warmup(fast, step, 0), await eager(() => warmup(slow, step, 0)), `warm-up step ${step}`);
  }
  // prompt 0, then 1 (the switch a stale cache would miss), then 0 again, then T different rows.
  // The K/V are projected only when the context changes (the warm-up already used prompt 0), in place
  // while its shape stays, into new tensors when it changes (T rows).
  const prompts = [0, 0, 1, 1, 0];
  const prepared = [0, 0, 1, 0, 1];
  const outs: Float32Array[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const a = await stream(fast, T, i, prompts[i]!);
    const b = await eager(() => stream(slow, T, i, prompts[i]!));
    assert.deepEqual(a.noise, b.noise, `stream call ${i} (prompt ${prompts[i]})`);
    assert.deepEqual([a.prepared, a.reallocated], [prepared[i], 0], `K/V preparation at stream call ${i}`);
    outs.push(a.noise);
  }
  const rows = await stream(fast, T, 9, 2, T);
  assert.deepEqual(rows.noise, (await eager(() => stream(slow, T, 9, 2, T))).noise, "a context of T rows");
  assert.deepEqual([rows.prepared, rows.reallocated], [1, 1], "a new context shape reallocates the K/V");

  // The prompt matters, so the comparisons above would see stale K/V: the same call with the other prompt differs.
  using other = model.createSession(cfg);
  for (let step = 0; step < T; step++) await warmup(other, step, 0);
  for (let i = 0; i < 2; i++) await stream(other, T, i, 0);
  const otherPrompt = await stream(other, T, 2, 0);
  assert.notDeepEqual(otherPrompt.noise, outs[2], "prompt 1 changed nothing: the test could not see a stale cache");
});

Deno.test("unet session: count_ops shows exactly the cross-attention projections removed per frame", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "unet", unetFiles.config, unetFiles.weights);
  const T = 2, cfg = { steps: T, latent_height: H, latent_width: W, count_ops: true };
  using fast = model.createSession(cfg);
  using slow = model.createSession(cfg);
  const a = await stream(fast, T, 0, 0);
  const b = await eager(() => stream(slow, T, 0, 0));
  assert.deepEqual(a.noise, b.noise);

  // Independently from the checkpoint: the cross-attention layers and their projection sizes.
  const toK = unetFiles.weights.names().filter((n) => n.endsWith(".attn2.to_k.weight"));
  assert.ok(toK.length > 0);
  let saved = 0;
  for (const k of toK) {
    for (const w of [k, k.replace(".to_k.", ".to_v.")]) {
      const [out, inp] = unetFiles.weights.info(w).shape as [number, number];
      assert.equal(inp, Cx);
      saved += 2 * L * out * inp; // one context row of L tokens: 2 M N K
    }
  }
  assert.equal(b.counts.get("linear")! - a.counts.get("linear")!, 2 * toK.length, "two linear calls per layer");
  for (const [op, n] of b.counts) if (op !== "linear" && op !== "total") assert.equal(a.counts.get(op), n, op);
  assert.equal(b.counts.get("total")! - a.counts.get("total")!, 2 * toK.length);
  assert.equal(b.flops - a.flops, saved, "GEMM FLOPs saved per call");
  // Without count_ops nothing is counted.
  using plain = model.createSession({ steps: T, latent_height: H, latent_width: W });
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 1 });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 1 });
  io.setPhilox("encoder_hidden_states", [1, L, Cx], { kind: "normal", seed: 1 });
  io.setI64("timesteps", [399, 279], [T]);
  await plain.run("stream", io);
  assert.ok(!io.names().some((n) => n.startsWith("op_count_") || n === "gemm_flops"));
});

// ---- the full stream: set_prompt mid-stream ----

const fixture = await buildPipelineFixture("l2d_context_kv_test_");
const { caseJson, dir, enginePath, video } = fixture;
const cfg = caseJson.config;
const SIZE = fixture.size;
const engine = await Engine.load(enginePath, { device: "cpu" });
const frameBytes = SIZE * SIZE * 3;

function openStream(prompt: string): Promise<Stream> {
  return engine.createStream({
    prompt,
    applyTemplate: false,
    width: SIZE,
    height: SIZE,
    tIndexList: cfg.t_index_list,
    seed: Number(cfg.noise_seed),
  });
}

/** The float output frames of a native "warmup" (frames first..first+n-1) or "push" (one frame). */
async function run(stream: Stream, method: "warmup" | "push", first: number, n: number): Promise<Float32Array> {
  using io = new TensorMap();
  const shape = method === "warmup" ? [n, SIZE, SIZE, 3] : [SIZE, SIZE, 3];
  io.set(method === "warmup" ? "frames" : "frame", {
    dtype: "U8",
    shape,
    data: video.data.slice(first * frameBytes, (first + n) * frameBytes),
  });
  await stream.session.run(method, io);
  return io.getF32("frames");
}

Deno.test("Stream: a prompt change mid-stream gives the eager frames exactly (the cached K/V follow set_prompt)", async () => {
  const A = String(cfg.prompt), B = "a zebra made of glass";
  using fast = await openStream(A);
  using slow = await eager(() => openStream(A));
  assert.deepEqual(await run(fast, "warmup", 0, 8), await eager(() => run(slow, "warmup", 0, 8)), "warm-up");
  const script: (string | number)[] = [8, B, 9, A, 10];
  for (const s of script) {
    if (typeof s === "string") {
      await fast.setPrompt(s);
      await eager(() => slow.setPrompt(s));
      continue;
    }
    assert.deepEqual(await run(fast, "push", s, 1), await eager(() => run(slow, "push", s, 1)), `frame ${s}`);
  }
});

Deno.test({
  name: "context kv tests: clean up",
  sanitizeResources: false,
  fn: async () => {
    unetFiles.weights.close();
    engine.close();
    await Deno.remove(dir, { recursive: true });
  },
});
