/**
 * Reads the Live2Diff 3-D UNet into a native {@linkcode TensorMap}: the diffusers 2-D UNet
 * (`unet/diffusion_pytorch_model.safetensors`) plus the motion-module checkpoint (motion modules
 * and the depth mapping network `flow_conv_in`), loaded the way Live2Diff does it: the ckpt's
 * `state_dict`, every `"module."` removed from the keys, keys containing `"grid"` dropped.
 *
 * The native "unet" model (`Model.create(ctx, "unet", unetModelConfig(...), weights)`) checks
 * every tensor's shape and refuses unused tensors, so a wrong checkpoint fails with the tensor's
 * name and both shapes. Its sessions (`model.createSession({steps, latent_height, latent_width})`)
 * hold the KV caches; methods `warmup`, `stream`, `get_state`, `set_state`, `reset` (see
 * cuda/src/models/unet/unet_model.cpp).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unetModelConfig } from "./unet.ts";
 *
 * const cfg = unetModelConfig({ block_out_channels: [32, 64] }, { use_motion_module: true });
 * assert.deepEqual(cfg.unet.block_out_channels, [32, 64]);
 * assert.equal(cfg.motion.use_motion_module, true);
 * ```
 *
 * @module
 */

import { join } from "node:path";
import type { TensorMap } from "../native.ts";
import { loadCheckpointInto } from "../weights.ts";

/** The config the native "unet" model takes. */
export interface UnetModelConfig {
  /** diffusers `unet/config.json`. */
  unet: Record<string, unknown>;
  /** Live2Diff `unet_additional_kwargs` (motion modules, mapping network, window/sink sizes). */
  motion: Record<string, unknown>;
}

/** Tensor names added by {@linkcode loadUnetWeights}, per source file. */
export interface LoadedUnetWeights {
  unet: string[];
  motion: string[];
}

/** Weights file names of a diffusers UNet folder, in order of preference. */
export const UNET_WEIGHT_FILES: readonly string[] = [
  "diffusion_pytorch_model.safetensors",
  "diffusion_pytorch_model.fp16.safetensors",
];

/** Combines the two config objects (deep-copied, so later edits of the inputs do not leak in). */
export function unetModelConfig(
  unetConfigJson: Record<string, unknown>,
  unetAdditionalKwargs: Record<string, unknown>,
): UnetModelConfig {
  if (typeof unetConfigJson !== "object" || unetConfigJson === null || Array.isArray(unetConfigJson)) {
    throw new TypeError("Cannot build the unet config: the diffusers config must be an object");
  }
  if (
    typeof unetAdditionalKwargs !== "object" || unetAdditionalKwargs === null || Array.isArray(unetAdditionalKwargs)
  ) {
    throw new TypeError("Cannot build the unet config: unet_additional_kwargs must be an object");
  }
  return { unet: structuredClone(unetConfigJson), motion: structuredClone(unetAdditionalKwargs) };
}

/** The UNet folder of `dir`: `dir` itself when it holds a weights file, else `dir/unet`. */
async function unetFolder(dir: string): Promise<string> {
  for (const base of [dir, join(dir, "unet")]) {
    for (const name of UNET_WEIGHT_FILES) {
      if ((await Deno.stat(join(base, name)).catch(() => null))?.isFile) return base;
    }
  }
  throw new Error(
    `Cannot find the UNet weights in ${dir}: none of ${UNET_WEIGHT_FILES.join(", ")} exists there or in unet/`,
  );
}

/** Reads `config.json` of a diffusers UNet folder (or of its `unet/` subfolder). */
export async function readUnetConfig(unetDir: string): Promise<Record<string, unknown>> {
  const path = join(await unetFolder(unetDir), "config.json");
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`Cannot read the UNet config ${path}: ${e instanceof Error ? e.message : e}`, { cause: e });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`Cannot use the UNet config ${path}: it is not a JSON object`);
  }
  return json as Record<string, unknown>;
}

/** Live2Diff's key mapping of the motion-module checkpoint: strip "module.", drop "grid" keys. */
export function motionKey(name: string): string | null {
  const key = name.replaceAll("module.", "");
  return key.includes("grid") ? null : key;
}

/**
 * Copies the 2-D UNet weights of `unetDir` (a diffusers `unet/` folder, or the model root holding
 * one) and the motion-module checkpoint `motionCkpt` (torch zip or safetensors) into `map`.
 * A motion key equal to a 2-D key replaces it (it is loaded second, as in Live2Diff).
 */
export async function loadUnetWeights(map: TensorMap, unetDir: string, motionCkpt: string): Promise<LoadedUnetWeights> {
  const folder = await unetFolder(unetDir);
  let weightsPath = "";
  for (const name of UNET_WEIGHT_FILES) {
    if ((await Deno.stat(join(folder, name)).catch(() => null))?.isFile) {
      weightsPath = join(folder, name);
      break;
    }
  }
  const unet = await loadCheckpointInto(map, weightsPath);
  const motion = await loadCheckpointInto(map, motionCkpt, { rename: motionKey });
  return { unet, motion };
}
