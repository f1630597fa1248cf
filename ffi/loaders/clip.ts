/**
 * Reads a HuggingFace CLIP text encoder folder (a diffusers `text_encoder/`: `config.json` +
 * `model.safetensors`, CLIPTextModel key names `text_model.*`) into a native {@linkcode TensorMap}
 * plus its config, ready for `Model.create(ctx, "clip_text", ...)`.
 *
 * The native "clip_text" model has one method, `encode`: io `input_ids` int [B,L] (L <=
 * max_position_embeddings) and optional `clip_skip` int [1] -> `last_hidden_state` [B,L,C],
 * `pooler_output` [B,C], `hidden_states` [layers+1,B,L,C] (embedding output first) and, with
 * `clip_skip`, `prompt_embeds` [B,L,C] = final_layer_norm(hidden_states[-(clip_skip+1)]) as
 * Live2Diff's `_encode_prompt` computes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clipTextRename } from "./clip.ts";
 *
 * // Keys of a single-file LDM checkpoint's text encoder map onto the HF names.
 * const rename = clipTextRename("cond_stage_model.transformer.");
 * assert.equal(rename("cond_stage_model.transformer.text_model.final_layer_norm.weight"),
 *   "text_model.final_layer_norm.weight");
 * assert.equal(rename("model.diffusion_model.conv_in.weight"), null);
 * ```
 *
 * @module
 */

import type { Context } from "../native.ts";
import { Model } from "../native.ts";
import { type LoadedModelFiles, loadModelFolder } from "./taesd.ts";

export type { LoadedModelFiles } from "./taesd.ts";

/** Weights file names of a HF text encoder folder, in order of preference. */
export const CLIP_TEXT_WEIGHT_FILES: readonly string[] = [
  "model.safetensors",
  "model.fp16.safetensors",
  "pytorch_model.bin",
];

/**
 * A rename function for checkpoints that store the HF text encoder under a prefix (e.g.
 * `cond_stage_model.transformer.` in single-file SD checkpoints): keys with the prefix lose it,
 * every other key is skipped.
 */
export function clipTextRename(prefix: string): (name: string) => string | null {
  return (name) => name.startsWith(prefix) ? name.slice(prefix.length) : null;
}

/** Reads a HF CLIPTextModel folder: its config.json and weights. */
export function loadClipText(dir: string): Promise<LoadedModelFiles> {
  return loadModelFolder(dir, CLIP_TEXT_WEIGHT_FILES);
}

/** Builds the native "clip_text" model of a text encoder folder on `ctx` (host weights are freed). */
export async function createClipTextModel(ctx: Context, dir: string): Promise<Model> {
  using files = await loadClipText(dir);
  return await Model.create(ctx, "clip_text", files.config, files.weights);
}
