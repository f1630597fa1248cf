/**
 * MiDaS v3 DPT-Hybrid (`DPTDepthModel(backbone="vitb_rn50_384", non_negative=True)`, the depth model
 * Live2Diff uses) for the native "midas" model: reads a `dpt_hybrid_384.pt`-style state dict into a
 * {@linkcode TensorMap} with its config, or generates full-size Philox weights from a manifest.
 *
 * The native model has one method, `depth`: io `images` F32 [N,3,H,W] (H, W positive multiples of 32;
 * MiDaS' (x - 0.5) / 0.5 convention, i.e. Live2Diff's [-1,1] frames) -> `depth` [N,H,W]. With
 * io `debug` = [1] it also returns `layer_1`..`layer_4`, the reassembled features (inputs of
 * `scratch.layerk_rn`).
 *
 * Every size comes from the weight shapes; the config only carries what shapes cannot tell:
 * `vit_num_heads` (default embed_dim / 64), `groupnorm_groups` (default 32) and `vit_hooks`
 * (default [8, 11]).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { midasConfigFromSpec } from "./midas.ts";
 *
 * // The reduction spec of a reduced model (golden models/dpt_hybrid_reduced.json) -> native config.
 * const config = midasConfigFromSpec({ vit_num_heads: 4, resnet_groupnorm_groups: 8 });
 * assert.deepEqual(config, { vit_num_heads: 4, groupnorm_groups: 8 });
 * ```
 *
 * @module
 */

import { loadCheckpointInto } from "../weights.ts";
import { CheckpointError } from "../formats/errors.ts";
import { type Context, Model, TensorMap } from "../native.ts";

/** Config of the native "midas" model (everything optional). */
export interface MidasConfig {
  /** Attention heads of the ViT (12 for the real DPT-Hybrid). @default embed_dim / 64 */
  vit_num_heads?: number;
  /** GroupNorm groups of the ResNet backbone (32 for the real model). @default 32 */
  groupnorm_groups?: number;
  /** Indices of the two hooked ViT blocks. @default [8, 11] */
  vit_hooks?: number[];
}

/** The real DPT-Hybrid (dpt_hybrid_384.pt). */
export const DPT_HYBRID_384_CONFIG: Readonly<MidasConfig> = Object.freeze({ vit_num_heads: 12, groupnorm_groups: 32 });

/**
 * Native config from a reduction spec such as the golden `dpt_hybrid_reduced.json` "spec"
 * (`vit_num_heads`, `resnet_groupnorm_groups`); missing fields keep the native defaults.
 */
export function midasConfigFromSpec(spec: Record<string, unknown>): MidasConfig {
  const config: MidasConfig = {};
  if (typeof spec.vit_num_heads === "number") config.vit_num_heads = spec.vit_num_heads;
  if (typeof spec.resnet_groupnorm_groups === "number") config.groupnorm_groups = spec.resnet_groupnorm_groups;
  if (typeof spec.groupnorm_groups === "number") config.groupnorm_groups = spec.groupnorm_groups;
  if (Array.isArray(spec.vit_hooks)) config.vit_hooks = spec.vit_hooks.map(Number);
  return config;
}

/**
 * The config that goes with a weights file: the "spec" of a sibling `<name>.json` when there is one
 * (how the golden reduced model documents its sizes), else {@linkcode DPT_HYBRID_384_CONFIG}. A sibling
 * that is not a regular file (FIFO, device, directory), over 1 MiB or not JSON is a {@linkcode CheckpointError}.
 */
export async function midasConfigFor(weightsPath: string): Promise<MidasConfig> {
  const jsonPath = weightsPath.replace(/\.(pt|pth|ckpt|bin|safetensors)$/, "") + ".json";
  if (jsonPath === weightsPath) return { ...DPT_HYBRID_384_CONFIG };
  const text = await readSiblingJson(jsonPath);
  if (text === null) return { ...DPT_HYBRID_384_CONFIG };
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`Cannot read the MiDaS config "${jsonPath}": ${(e as Error).message}`, { cause: e });
  }
  const spec = json?.spec ?? json;
  return typeof spec === "object" && spec !== null
    ? { ...DPT_HYBRID_384_CONFIG, ...midasConfigFromSpec(spec) }
    : { ...DPT_HYBRID_384_CONFIG };
}

/** A config sibling is a few hundred bytes; anything this big is not one. */
const MAX_CONFIG_BYTES = 1 << 20;

/**
 * The text of a weights file's sibling config; null when there is none. Like the checkpoint readers,
 * it refuses a FIFO, device or directory BEFORE opening it (opening a FIFO blocks until a writer
 * appears, a device can stream without end), and bounds the size.
 */
async function readSiblingJson(path: string): Promise<string | null> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new CheckpointError(`Cannot read the MiDaS config "${path}": ${(e as Error).message}`, { cause: e });
  }
  if (!stat.isFile) throw new CheckpointError(`Cannot read the MiDaS config "${path}": not a regular file`);
  if (stat.size > MAX_CONFIG_BYTES) {
    throw new CheckpointError(
      `Cannot read the MiDaS config "${path}": ${stat.size} bytes, at most ${MAX_CONFIG_BYTES}`,
    );
  }
  try {
    using file = await Deno.open(path, { read: true });
    // Checked again on the open file: a FIFO or a bigger file swapped in after the stat.
    const opened = await file.stat();
    if (!opened.isFile || opened.size > MAX_CONFIG_BYTES) {
      throw new CheckpointError(`Cannot read the MiDaS config "${path}": not a small regular file`);
    }
    const bytes = new Uint8Array(opened.size);
    let read = 0;
    while (read < bytes.length) {
      const n = await file.read(bytes.subarray(read));
      if (n === null) break;
      read += n;
    }
    return new TextDecoder().decode(bytes.subarray(0, read));
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`Cannot read the MiDaS config "${path}": ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Copies a DPT state dict (`torch.save` .pt or safetensors) into `map`. Keys are kept as in the
 * file; a `module.` prefix (DataParallel checkpoints) is removed. Returns the keys added.
 */
export function loadMidasWeights(map: TensorMap, path: string): Promise<string[]> {
  return loadCheckpointInto(map, path, { rename: (name) => name.startsWith("module.") ? name.slice(7) : name });
}

/** A state-dict manifest: `[name, shape]` pairs (golden `dpt_hybrid_384_state_dict_manifest.json`). */
export type StateDictManifest = ReadonlyArray<readonly [string, readonly number[]]>;

/**
 * Fills `map` with the golden Philox weight rule (seed `seed`) for every entry of the manifest: the
 * full-size synthetic DPT-Hybrid. Generated natively, so 123 M parameters take a few seconds.
 */
export function midasPhiloxWeights(map: TensorMap, manifest: StateDictManifest, seed: number): void {
  for (const entry of manifest) {
    if (!Array.isArray(entry) || typeof entry[0] !== "string" || !Array.isArray(entry[1])) {
      throw new TypeError(`Cannot use the MiDaS manifest: entry ${JSON.stringify(entry)} is not [name, shape]`);
    }
    map.setPhilox(entry[0], [...entry[1]], { kind: "weight", seed });
  }
}

/** Builds the native model from a weights file (config from {@linkcode midasConfigFor} unless given). */
export async function createMidasModel(ctx: Context, path: string, config?: MidasConfig): Promise<Model> {
  using weights = new TensorMap();
  await loadMidasWeights(weights, path);
  return await Model.create(ctx, "midas", config ?? await midasConfigFor(path), weights);
}
