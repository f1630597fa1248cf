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
 * (how the golden reduced model documents its sizes), else {@linkcode DPT_HYBRID_384_CONFIG}.
 */
export async function midasConfigFor(weightsPath: string): Promise<MidasConfig> {
  const jsonPath = weightsPath.replace(/\.(pt|pth|ckpt|bin|safetensors)$/, "") + ".json";
  if (jsonPath === weightsPath) return { ...DPT_HYBRID_384_CONFIG };
  let text: string;
  try {
    text = await Deno.readTextFile(jsonPath);
  } catch {
    return { ...DPT_HYBRID_384_CONFIG };
  }
  const json = JSON.parse(text);
  const spec = json?.spec ?? json;
  return typeof spec === "object" && spec !== null
    ? { ...DPT_HYBRID_384_CONFIG, ...midasConfigFromSpec(spec) }
    : { ...DPT_HYBRID_384_CONFIG };
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
