/**
 * Reads a diffusers TAESD folder (`AutoencoderTiny`: `config.json` + `diffusion_pytorch_model.safetensors`)
 * into a native {@linkcode TensorMap} plus its config, ready for `Model.create(ctx, "taesd", ...)`.
 *
 * The native "taesd" model has two methods: `encode` (io `images` F32 [N,3,H,W] in [-1,1], H and W
 * multiples of 8 -> `latents` [N,4,H/8,W/8]; the input is mapped to [0,1] first, as diffusers'
 * EncoderTiny does, and no scaling_factor is applied) and `decode` (`latents` -> `images`, `2y-1`, not
 * clamped).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTaesd } from "./taesd.ts";
 *
 * // A folder without config.json is rejected with an Error naming the file.
 * const err = await loadTaesd("./no/such/taesd").catch((e) => e);
 * assert.ok(err instanceof Error && err.message.includes("config.json"));
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { loadCheckpointInto } from "../weights.ts";
import { type Context, Model, TensorMap } from "../native.ts";

/** A model's config and weights, as `Model.create` takes them. Close (or `using`) to free the weights. */
export interface LoadedModelFiles extends Disposable {
  /** The folder's config.json, parsed. */
  // deno-lint-ignore no-explicit-any
  config: Record<string, any>;
  /** Every tensor of the weights file, under its file name. */
  weights: TensorMap;
  /** Path of the weights file that was read. */
  weightsPath: string;
}

/** Weights file names of a diffusers model folder, in order of preference. */
export const TAESD_WEIGHT_FILES: readonly string[] = [
  "diffusion_pytorch_model.safetensors",
  "diffusion_pytorch_model.fp16.safetensors",
  "diffusion_pytorch_model.bin",
];

/** Reads `config.json` of a model folder; the error names the file. */
// deno-lint-ignore no-explicit-any
export async function readModelConfig(dir: string): Promise<Record<string, any>> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read the model config ${path}: ${e instanceof Error ? e.message : e}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot parse the model config ${path}: ${e instanceof Error ? e.message : e}`, { cause: e });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`Cannot use the model config ${path}: it is not a JSON object`);
  }
  // deno-lint-ignore no-explicit-any
  return json as Record<string, any>;
}

/** The first of `candidates` that exists in `dir`; the error lists them all. */
export async function findWeightsFile(dir: string, candidates: readonly string[]): Promise<string> {
  for (const name of candidates) {
    const path = join(dir, name);
    const stat = await Deno.stat(path).catch(() => null);
    if (stat?.isFile) return path;
  }
  throw new Error(`Cannot find the weights of ${dir}: none of ${candidates.join(", ")} exists`);
}

/**
 * Config + weights of a model folder. `rename` maps file keys to model keys (null skips a tensor).
 * @internal shared by the loaders
 */
export async function loadModelFolder(
  dir: string,
  candidates: readonly string[],
  rename?: (name: string) => string | null,
): Promise<LoadedModelFiles> {
  const config = await readModelConfig(dir);
  const weightsPath = await findWeightsFile(dir, candidates);
  const weights = new TensorMap();
  try {
    await loadCheckpointInto(weights, weightsPath, rename ? { rename } : {});
  } catch (e) {
    weights.close();
    throw e;
  }
  return { config, weights, weightsPath, [Symbol.dispose]: () => weights.close() };
}

/** Reads a diffusers AutoencoderTiny (TAESD) folder: its config.json and weights. */
export function loadTaesd(dir: string): Promise<LoadedModelFiles> {
  return loadModelFolder(dir, TAESD_WEIGHT_FILES);
}

/** Builds the native "taesd" model of a TAESD folder on `ctx` (the host copy of the weights is freed). */
export async function createTaesdModel(ctx: Context, dir: string): Promise<Model> {
  using files = await loadTaesd(dir);
  return await Model.create(ctx, "taesd", files.config, files.weights);
}
