/**
 * Runner of the `midas` golden cases: MiDaS DPT-Hybrid depth through the native "midas" model.
 * Driven by case.json and the recorded output names:
 * - `depth_reduced` [N,H,W]: the shipped reduced model (`reduced_model.weights`, config from
 *   `reduced_model.spec`) on the first N input images;
 * - `depth_full` [N,H,W]: the full-size model with Philox weights (seed and manifest named in
 *   `full_model.weights`, or `full_model.seed` / `full_model.manifest` when given);
 * - `<reduced|full>_layer_<k>` [n,...]: debug feature k (input of scratch.layerk_rn) of the first n images.
 * Input `images_u8` [N,H,W,3] becomes u8 / 127.5 - 1 as [N,3,H,W] float32.
 *
 * Tolerances: `tolerance.advised_max_abs` when the case has one; otherwise the case's
 * `initial_guess` (depth: 1e-4 x max|ref|; layers: 1e-4, raised to the README's F16 floor
 * 2e-3 x max|ref| for F16-stored references).
 *
 * Runner `midas_reduced` does the reduced-model outputs only (the full model takes long on CPU).
 *
 * @module
 */

import { join } from "node:path";
import type { CaseRun, CaseRunner } from "./framework.ts";
import { type HostTensor, numel, toFloat32 } from "../../ffi/host_tensor.ts";
import { type Context, Model, TensorMap } from "../../ffi/native.ts";
import { type Images, u8ImageToNchw } from "./images.ts";
import {
  DPT_HYBRID_384_CONFIG,
  loadMidasWeights,
  type MidasConfig,
  midasConfigFromSpec,
  midasPhiloxWeights,
  type StateDictManifest,
} from "../../ffi/loaders/midas.ts";

/** The first `n` images of an NCHW batch. */
function firstImages(img: Images, n: number): Images {
  if (n > img.shape[0]!) throw new Error(`the case has ${img.shape[0]} input images, ${n} needed`);
  const per = numel(img.shape.slice(1));
  return { values: img.values.subarray(0, n * per), shape: [n, ...img.shape.slice(1)] };
}

/** Runs `depth` (with debug features) and returns every output as float32. */
async function depthOutputs(model: Model, images: Images, debug: boolean): Promise<Map<string, Float32Array>> {
  using io = new TensorMap();
  io.setF32("images", images.values, images.shape);
  if (debug) io.setI64("debug", [1], [1]);
  await model.run("depth", io);
  const out = new Map<string, Float32Array>();
  for (const name of io.names()) if (name !== "images" && name !== "debug") out.set(name, io.getF32(name).slice());
  return out;
}

function maxAbs(values: Float32Array): number {
  let m = 0;
  for (const v of values) m = Math.max(m, Math.abs(v));
  return m;
}

/** Advised bound, or the case's initial guess (see the module doc). */
function bound(run: CaseRun, name: string, ref: HostTensor, refValues: Float32Array): number {
  const guess = run.json?.tolerance?.initial_guess ?? {};
  const peak = maxAbs(refValues);
  let fallback: number;
  if (name.startsWith("depth")) {
    const rel = parseFloat(String(guess.depth_rel_max_abs ?? "1e-4"));
    fallback = (Number.isFinite(rel) ? rel : 1e-4) * peak;
  } else {
    fallback = typeof guess.layers_max_abs === "number" ? guess.layers_max_abs : 1e-4;
    if (ref.dtype === "F16") fallback = Math.max(fallback, 2e-3 * peak);
  }
  return run.advised(name, Math.max(fallback, 1e-6));
}

/** Seed and manifest path of the full-size model from case.json. */
function fullModelSource(run: CaseRun): { seed: number; manifest: string } {
  const full = run.json?.full_model ?? {};
  const text = String(full.weights ?? "");
  const seed = typeof full.seed === "number" ? full.seed : Number(/seed\s+(\d+)/.exec(text)?.[1]);
  const manifest = typeof full.manifest === "string" ? full.manifest : /([\w.-]*manifest[\w.-]*\.json)/.exec(text)?.[1];
  if (!Number.isInteger(seed) || !manifest) {
    throw new Error(`case.json full_model does not name a Philox seed and a manifest: ${JSON.stringify(full)}`);
  }
  // A bare file name lives in the case folder; a path with a folder is relative to the golden root.
  return { seed, manifest: manifest.includes("/") ? run.path(manifest) : join(run.dir, manifest) };
}

interface Variant {
  prefix: "reduced" | "full";
  depthName: string;
  build: (ctx: Context) => Promise<Model>;
}

function variants(run: CaseRun): Variant[] {
  const reduced = run.json?.reduced_model ?? {};
  const full = run.json?.full_model ?? {};
  return [
    {
      prefix: "reduced",
      depthName: "depth_reduced",
      build: async (ctx) => {
        if (typeof reduced.weights !== "string") throw new Error("case.json has no reduced_model.weights");
        using weights = new TensorMap();
        await loadMidasWeights(weights, run.path(reduced.weights));
        const config: MidasConfig = midasConfigFromSpec(reduced.spec ?? {});
        return await Model.create(ctx, "midas", config, weights);
      },
    },
    {
      prefix: "full",
      depthName: "depth_full",
      build: async (ctx) => {
        const { seed, manifest } = fullModelSource(run);
        const entries = JSON.parse(await Deno.readTextFile(manifest)) as StateDictManifest;
        using weights = new TensorMap();
        midasPhiloxWeights(weights, entries, seed);
        const config = { ...DPT_HYBRID_384_CONFIG, ...midasConfigFromSpec(full.spec ?? {}) };
        return await Model.create(ctx, "midas", config, weights);
      },
    },
  ];
}

async function runVariant(run: CaseRun, ctx: Context, v: Variant, names: string[], inputs: Images): Promise<void> {
  const layerRe = new RegExp(`^${v.prefix}_layer_(\\d+)$`);
  const wanted = names.filter((n) => n === v.depthName || layerRe.test(n));
  if (wanted.length === 0) return;
  // Images needed: the largest leading dimension among the recorded outputs.
  const refs = new Map<string, HostTensor>();
  for (const n of wanted) refs.set(n, await run.expected(n));
  const count = Math.max(...[...refs.values()].map((t) => t.shape[0] ?? 1));
  const debug = wanted.some((n) => n !== v.depthName);
  using model = await v.build(ctx);
  const started = performance.now();
  const out = await depthOutputs(model, firstImages(inputs, count), debug);
  const seconds = (performance.now() - started) / 1000;
  if (Deno.env.get("L2D_MIDAS_TIMING")) {
    console.log(`[midas] ${v.prefix} forward, ${count} image(s): ${seconds.toFixed(2)} s`);
  }
  for (const [name, ref] of refs) {
    const key = name === v.depthName ? "depth" : `layer_${layerRe.exec(name)![1]}`;
    const actual = out.get(key);
    if (!actual) throw new Error(`the midas model returned no "${key}" (for "${name}")`);
    const refValues = toFloat32(ref);
    // Recorded debug features may cover fewer images than were run: compare the leading ones.
    const n = refValues.length;
    if (actual.length < n) throw new Error(`"${key}" has ${actual.length} values, "${name}" ${n}`);
    run.compare(name, actual.subarray(0, n), refValues, bound(run, name, ref, refValues));
  }
}

async function midasCase(run: CaseRun, ctx: Context, prefixes: Variant["prefix"][]): Promise<void> {
  const names = await run.outputNames();
  const known = /^(depth_(reduced|full)|(reduced|full)_layer_\d+)$/;
  const unknown = names.filter((n) => !known.test(n));
  if (unknown.length) throw new Error(`unknown midas outputs: ${unknown.join(", ")}`);
  const inputs = u8ImageToNchw(await run.input("images_u8"));
  for (const v of variants(run)) {
    if (prefixes.includes(v.prefix)) await runVariant(run, ctx, v, names, inputs);
  }
}

/** Runners by case kind; `midas_reduced` skips the full-size model. */
export const runners: Record<string, CaseRunner> = {
  midas: (run, ctx) => midasCase(run, ctx, ["reduced", "full"]),
  midas_reduced: (run, ctx) => midasCase(run, ctx, ["reduced"]),
};
