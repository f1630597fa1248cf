/**
 * Golden runners of the Live2Diff UNet cases: `unet_warmup`, `unet_stream`, `unet_full_shapes`.
 * Sizes come from each case (steps = number of timesteps, latent h/w from the inputs), never from
 * the public set, so held-back variants (other sizes, 3 steps) run unchanged.
 *
 * @module
 */

import { join } from "node:path";
import { type CheckpointFile, openSafetensors } from "../../ffi/formats/mod.ts";
import { type HostTensor, numel, toFloat32 } from "../../ffi/host_tensor.ts";
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../../ffi/loaders/unet.ts";
import { type Context, Model, type Session, TensorMap } from "../../ffi/native.ts";
import type { CaseRun, CaseRunner } from "./framework.ts";

// ---- small tensor helpers ----

/** Element `i` along the first dimension (a view, no copy). */
export function takeRow(t: HostTensor, i: number): HostTensor {
  const rowBytes = t.data.byteLength / t.shape[0]!;
  return { dtype: t.dtype, shape: t.shape.slice(1), data: t.data.subarray(i * rowBytes, (i + 1) * rowBytes) };
}

/** values[..., start:end, ...] along `axis` of a C-contiguous `shape`. */
export function sliceAxis(
  values: Float32Array,
  shape: number[],
  axis: number,
  start: number,
  end: number,
): Float32Array {
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1)), n = shape[axis]!;
  const out = new Float32Array(outer * (end - start) * inner);
  for (let o = 0; o < outer; o++) {
    out.set(values.subarray((o * n + start) * inner, (o * n + end) * inner), o * (end - start) * inner);
  }
  return out;
}

/** Concatenates float arrays. */
function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** An entry of a tensor map as float32 values (any dtype). */
function f32(map: TensorMap, name: string): Float32Array {
  return toFloat32(map.get(name));
}

const cacheName = (i: number) => `kv_cache_${String(i).padStart(2, "0")}`;

// ---- model set-up ----

/** Builds the tiny UNet of a case from its model files (2-D folder + motion ckpt). */
async function modelFromFiles(run: CaseRun, ctx: Context): Promise<Model> {
  const files = run.json.model_files ?? {};
  if (!files.base_model || !files.motion_module) {
    throw new Error("case.json has no model_files.base_model/motion_module");
  }
  const unetDir = join(run.path(files.base_model), "unet");
  const config = unetModelConfig(await readUnetConfig(unetDir), run.json.unet_additional_kwargs);
  using weights = new TensorMap();
  await loadUnetWeights(weights, unetDir, run.path(files.motion_module));
  return await Model.create(ctx, "unet", config, weights);
}

/** Runs the warmup (one call per denoising step) of a unet_warmup-style input set. */
async function runWarmup(
  session: Session,
  inputs: { latents: HostTensor; depth: HostTensor; prompt: HostTensor; timesteps: Float32Array },
): Promise<Float32Array[]> {
  const preds: Float32Array[] = [];
  for (let step = 0; step < inputs.timesteps.length; step++) {
    using io = new TensorMap();
    io.set("sample", takeRow(inputs.latents, step));
    io.set("depth", inputs.depth);
    io.set("encoder_hidden_states", inputs.prompt);
    io.setI64("timestep", [inputs.timesteps[step]!], [1]);
    io.setI64("step", [step], [1]);
    await session.run("warmup", io);
    preds.push(io.getF32("noise_pred"));
  }
  return preds;
}

/** The inputs of a unet_warmup-style case, read with `read` (CaseRun.input or a file's read). */
async function warmupInputs(read: (name: string) => Promise<HostTensor>) {
  return {
    latents: await read("latents"),
    depth: await read("depth_latents"),
    prompt: await read("prompt_embeds"),
    timesteps: toFloat32(await read("timesteps")),
  };
}

/** Session config for latents [..., h, w] and T steps. */
function sessionConfig(latents: HostTensor, steps: number) {
  const s = latents.shape;
  return { steps, latent_height: s[s.length - 2]!, latent_width: s[s.length - 1]! };
}

// ---- unet_warmup ----

async function unetWarmup(run: CaseRun, ctx: Context): Promise<void> {
  using model = await modelFromFiles(run, ctx);
  const inputs = await warmupInputs((n) => run.input(n));
  const T = inputs.timesteps.length;
  using session = model.createSession(sessionConfig(inputs.latents, T));
  const preds = await runWarmup(session, inputs);
  run.compare("noise_pred", concatF32(preds), await run.expected("noise_pred"));
  await compareCaches(run, session, /^kv_cache_(\d+)$/, "head");
}

/**
 * Compares every recorded cache output whose name matches `pattern` (group 1 = cache index) with
 * the session's cache: "head" = slots 0..k-1, "tail" = the last k slots (k = recorded slot count).
 */
async function compareCaches(run: CaseRun, session: Session, pattern: RegExp, part: "head" | "tail") {
  for (const name of (await run.outputNames()).sort()) {
    const m = pattern.exec(name);
    if (!m) continue;
    const index = Number(m[1]);
    const ref = await run.expected(name);
    using io = new TensorMap();
    io.setI64("cache_index", [index], [1]);
    await session.run("get_state", io);
    const full = io.info(cacheName(index));
    const values = f32(io, cacheName(index));
    const k = ref.shape[3]!, window = full.shape[3]!;
    const start = part === "head" ? 0 : window - k;
    run.compare(name, sliceAxis(values, full.shape, 3, start, start + k), ref);
  }
}

// ---- unet_stream ----

/** The unet_warmup case this stream case starts from (sibling folder). */
async function warmupSibling(run: CaseRun): Promise<string> {
  const name = run.dir.split("/").filter(Boolean).pop() ?? "";
  const candidates = [name.replace("unet_stream", "unet_warmup"), "unet_warmup"];
  for (const c of candidates) {
    const dir = join(run.dir, "..", c);
    if ((await Deno.stat(join(dir, "inputs.safetensors")).catch(() => null))?.isFile) return dir;
  }
  throw new Error(`unet_stream needs the unet_warmup case next to it (tried ${candidates.join(", ")})`);
}

async function unetStream(run: CaseRun, ctx: Context): Promise<void> {
  using model = await modelFromFiles(run, ctx);
  const timesteps = toFloat32(await run.input("timesteps"));
  const latents = await run.input("latents"); // [S, T, 4, 1, h, w]
  const depth = await run.input("depth_latents");
  const prompt = await run.input("prompt_embeds");
  const T = timesteps.length, S = latents.shape[0]!;
  using session = model.createSession(sessionConfig(latents, T));

  if (await run.hasInput("kv_cache_00")) {
    // Starting caches recorded in the case itself.
    using io = new TensorMap();
    for (let i = 0; await run.hasInput(cacheName(i)); i++) io.set(cacheName(i), await run.input(cacheName(i)));
    await session.run("set_state", io);
  } else {
    // Recompute the warmup of the sibling unet_warmup case (same model files, README "How the cases chain").
    let file: CheckpointFile | undefined;
    try {
      file = await openSafetensors(join(await warmupSibling(run), "inputs.safetensors"));
      const f = file;
      const w = await warmupInputs((n) => f.read(n));
      if (w.timesteps.length !== T || w.timesteps.some((t, i) => t !== timesteps[i])) {
        throw new Error(`the unet_warmup timesteps [${w.timesteps}] differ from unet_stream's [${timesteps}]`);
      }
      await runWarmup(session, w);
    } finally {
      file?.close();
    }
  }

  const outputs = await run.outputNames();
  const snapshots = new Set<number>();
  for (const n of outputs) {
    const m = /^kv_cache_after_step(\d+)_\d+$/.exec(n);
    if (m) snapshots.add(Number(m[1]));
  }
  const refBias = toFloat32(await run.input("attn_bias"));
  const refPe = toFloat32(await run.input("pe_idx"));
  const refUpdate = toFloat32(await run.input("update_idx"));
  const preds: Float32Array[] = [], bias: Float32Array[] = [], pe: Float32Array[] = [], update: Float32Array[] = [];
  for (let s = 0; s < S; s++) {
    using io = new TensorMap();
    io.set("sample", takeRow(latents, s));
    io.set("depth", takeRow(depth, s));
    io.set("encoder_hidden_states", prompt);
    io.setI64("timesteps", timesteps, [T]);
    await session.run("stream", io);
    preds.push(io.getF32("noise_pred"));
    bias.push(f32(io, "attn_bias_used"));
    pe.push(f32(io, "pe_idx_used"));
    update.push(f32(io, "update_idx_used"));
    if (snapshots.has(s)) {
      const step = String(s).padStart(2, "0");
      await compareCaches(run, session, new RegExp(`^kv_cache_after_step${step}_(\\d+)$`), "tail");
    }
  }
  run.compareExact("attn_bias (used, every step)", concatF32(bias), refBias);
  run.compareExact("pe_idx (used, every step)", concatF32(pe), refPe);
  run.compareExact("update_idx (used, every step)", concatF32(update), refUpdate);
  run.compare("noise_pred", concatF32(preds), await run.expected("noise_pred"));

  using state = new TensorMap();
  state.setI64("cache_index", [0], [1]); // the bookkeeping comes with any cache
  await session.run("get_state", state);
  for (const key of ["attn_bias", "pe_idx", "update_idx"]) {
    const name = `${key}_after_last`;
    if (outputs.includes(name)) run.compareExact(name, f32(state, key), await run.expected(name));
  }
}

// ---- unet_full_shapes ----

/** The Philox weight seed of a full-shapes case: stated in case.json, else the golden README, else 1007. */
async function fullShapesSeed(run: CaseRun): Promise<number> {
  for (const text of [run.json.weights_seed, run.json.weights, run.json.what]) {
    if (typeof text === "number") return text;
    const m = typeof text === "string" ? /seed (\d+)/.exec(text) : null;
    if (m) return Number(m[1]);
  }
  const readme = await Deno.readTextFile(join(run.root, "README.md")).catch(() => "");
  const row = /^\|\s*real-size Live2Diff UNet[^|]*\|\s*(\d+)\s*\|/m.exec(readme);
  return row ? Number(row[1]) : 1007;
}

async function unetFullShapes(run: CaseRun, ctx: Context): Promise<void> {
  const json = run.json;
  const seed = await fullShapesSeed(run);
  const manifest: [string, number[]][] = JSON.parse(
    await Deno.readTextFile(join(run.dir, "unet3d_state_dict_manifest.json")),
  );
  const config = unetModelConfig(json.unet_config_2d, json.unet_additional_kwargs);
  const log = (msg: string) => console.error(`[unet_full_shapes] ${msg}`);
  let t0 = performance.now();
  let model: Model;
  {
    using weights = new TensorMap();
    for (const [name, shape] of manifest) {
      if (name.endsWith("pos_encoder.pe")) continue; // sinusoidal buffer: the model computes it
      weights.setPhilox(name, shape, { kind: "weight", seed });
    }
    log(`Philox weights (seed ${seed}, ${manifest.length} tensors): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    t0 = performance.now();
    model = await Model.create(ctx, "unet", config, weights);
    log(`model created: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  using _model = model;

  const ph = json.inputs_philox;
  const draw = (io: TensorMap, name: string, key: string) => {
    const [stream, shape] = ph[key] as [number, number[]];
    io.setPhilox(name, shape, { kind: "normal", seed: ph.seed, stream, draw: 0 });
  };
  using inputs = new TensorMap();
  draw(inputs, "warmup_latents", "warmup_latents");
  draw(inputs, "warmup_depth", "warmup_depth_latents");
  draw(inputs, "prompt", "prompt_embeds");
  draw(inputs, "stream_latents", "stream_latents");
  draw(inputs, "stream_depth", "stream_depth_latents");
  const timesteps = toFloat32(await run.input("timesteps"));
  const T = timesteps.length;
  const latents = inputs.get("warmup_latents");
  using session = model.createSession(sessionConfig(latents, T));

  t0 = performance.now();
  const warm = await runWarmup(session, {
    latents,
    depth: inputs.get("warmup_depth"),
    prompt: inputs.get("prompt"),
    timesteps,
  });
  log(`warmup (${T} steps): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  run.compare(
    "warmup_noise_pred",
    concatF32(warm),
    await run.expected("warmup_noise_pred"),
    json.tolerance.noise_pred_max_abs,
  );

  // One streaming step from the case's initial bookkeeping.
  {
    using io = new TensorMap();
    for (const key of ["attn_bias", "pe_idx", "update_idx"]) io.set(key, await run.input(key));
    await session.run("set_state", io);
  }
  t0 = performance.now();
  using io = new TensorMap();
  io.set("sample", inputs.get("stream_latents"));
  io.set("depth", inputs.get("stream_depth"));
  const prompt = inputs.get("prompt");
  io.set("encoder_hidden_states", prompt); // batch 1: the model broadcasts it (= prompt.repeat(n,1,1))
  io.setI64("timesteps", timesteps, [T]);
  await session.run("stream", io);
  log(`stream step: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  run.compare(
    "stream_noise_pred",
    io.getF32("noise_pred"),
    await run.expected("stream_noise_pred"),
    json.tolerance.noise_pred_max_abs,
  );

  // Caches: sums (relative), sum of squares (relative), slices.
  const sums: Record<string, number> = json.cache_sums ?? {};
  const rel: number = json.tolerance.cache_sum_rel;
  const names = await run.outputNames();
  for (let i = 0; names.includes(`${cacheName(i)}_slice`); i++) {
    using st = new TensorMap();
    st.setI64("cache_index", [i], [1]);
    await session.run("get_state", st);
    const shape = st.info(cacheName(i)).shape; // [T, 2, P, W, C]
    const values = f32(st, cacheName(i));
    let sum = 0, sumsq = 0;
    for (let j = 0; j < values.length; j++) {
      sum += values[j]!;
      sumsq += values[j]! * values[j]!;
    }
    const refSum = sums[`${cacheName(i)}_sum`] ?? toFloat32(await run.expected(`${cacheName(i)}_sum`))[0]!;
    const refSq = sums[`${cacheName(i)}_sumsq`] ?? toFloat32(await run.expected(`${cacheName(i)}_sumsq`))[0]!;
    // cache_sum_rel relative to the reference; a sum whose terms cancel (|sum| << ||x||_2) gets
    // the floor rel * ||x||_2 instead (its rounding error scales with the terms, not with the sum).
    const sumBound = rel * Math.max(Math.abs(refSum), Math.sqrt(refSq));
    run.compare(`${cacheName(i)}_sum`, [sum], new Float32Array([refSum]), sumBound);
    run.compare(`${cacheName(i)}_sumsq`, [sumsq], new Float32Array([refSq]), rel * Math.abs(refSq));
    const ref = await run.expected(`${cacheName(i)}_slice`); // cache[:, :, :2, :10, :8]
    let v = sliceAxis(values, shape, 2, 0, ref.shape[2]!);
    let s = [shape[0]!, shape[1]!, ref.shape[2]!, shape[3]!, shape[4]!];
    v = sliceAxis(v, s, 3, 0, ref.shape[3]!);
    s = [s[0]!, s[1]!, s[2]!, ref.shape[3]!, s[4]!];
    v = sliceAxis(v, s, 4, 0, ref.shape[4]!);
    run.compare(
      `${cacheName(i)}_slice`,
      v,
      ref,
      json.tolerance.kv_cache_slice_max_abs ?? json.tolerance.noise_pred_max_abs,
    );
  }
}

/** Runners by case kind. */
export const runners: Record<string, CaseRunner> = {
  unet_warmup: unetWarmup,
  unet_stream: unetStream,
  unet_full_shapes: unetFullShapes,
};
