/**
 * Inputs of an engine build: Live2Diff style configs (YAML), diffusers SD1.5 folders, TAESD folders, and
 * the SD1.5 defaults used when the base model is a single-file checkpoint.
 *
 * Style YAML: the keys Live2Diff reads (`base:` inheritance, `pretrained_model_path`, `motion_module_path`,
 * `depth_model_path`, `third_party_dict: {dreambooth, lora_list: [{lora, lora_alpha}], clip_skip}`,
 * `prompt_template`, `t_index_list`, `num_inference_steps`, `unet_additional_kwargs`,
 * `noise_scheduler_kwargs`). Live2Diff resolves relative paths against the working directory (its repo
 * root); a user's config may be used from anywhere, so a relative path is looked up, in order, under
 * `root` (when given), the working directory, the YAML's folder and that folder's ancestors; the first
 * place where the file exists wins.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
// A full specifier (not an import-map name) so projects importing live2diff by path resolve it too.
import { parse as parseYaml } from "yaml";
import type { LoraSpec } from "./lora.ts";
import type { ProvenanceEntry } from "./format.ts";
import { Progress } from "./progress.ts";

/** Everything a style config says about a build. Paths are absolute. */
export interface StyleConfig {
  /** The YAML this came from. */
  path: string;
  /** `pretrained_model_path`: diffusers SD1.5 folder. */
  base?: string;
  /** `motion_module_path` (live2diff.ckpt). */
  motion?: string;
  /** `depth_model_path` (dpt_hybrid_384.pt). */
  depth?: string;
  /** `third_party_dict.dreambooth`: single-file LDM checkpoint. */
  dreambooth?: string;
  /** `third_party_dict.lora_list`, fused with Live2Diff's rule. */
  loras: LoraSpec[];
  clip_skip: number;
  prompt_template: string | null;
  t_index_list: number[];
  num_inference_steps: number;
  unet_additional_kwargs: Record<string, unknown>;
  noise_scheduler_kwargs: Record<string, unknown>;
}

/** Live2Diff's configs/base_config.yaml values, used when a style config has neither them nor a base. */
export const LIVE2DIFF_DEFAULTS = {
  unet_additional_kwargs: {
    cond_mapping: true,
    use_inflated_groupnorm: true,
    use_motion_module: true,
    motion_module_resolutions: [1, 2, 4, 8],
    unet_use_cross_frame_attention: false,
    unet_use_temporal_attention: false,
    motion_module_type: "Streaming",
    motion_module_kwargs: {
      num_attention_heads: 8,
      num_transformer_block: 1,
      attention_block_types: ["Temporal_Self", "Temporal_Self"],
      temporal_position_encoding: true,
      temporal_position_encoding_max_len: 24,
      temporal_attention_dim_div: 1,
      zero_initialize: true,
      attention_class_name: "stream",
      attention_kwargs: { window_size: 16, sink_size: 8 },
    },
  },
  noise_scheduler_kwargs: {
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "linear",
    steps_offset: 1,
    clip_sample: false,
  },
  /** Defaults of the style settings when a config has none (Live2Diff's clip_skip default is 1). */
  clip_skip: 1,
  num_inference_steps: 50,
  t_index_list: [30, 36, 42],
};

/** The real SD1.5 UNet config (runwayml/stable-diffusion-v1-5 unet/config.json). */
export const SD15_UNET_CONFIG = {
  _class_name: "UNet2DConditionModel",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
};

/** The SD1.5 text encoder (CLIP ViT-L/14 text tower) config. */
export const SD15_TEXT_ENCODER_CONFIG = {
  architectures: ["CLIPTextModel"],
  attention_dropout: 0,
  bos_token_id: 0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  vocab_size: 49408,
};

/** The SD1.5 VAE layout (only used to map/validate the VAE keys of single-file checkpoints). */
export const SD15_VAE_CONFIG = { block_out_channels: [128, 256, 512, 512], layers_per_block: 2 };

/** Error for missing or inconsistent build inputs. */
export class BuildInputError extends Error {
  override name = "BuildInputError";
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Resolves a config path against the candidate roots (see the module doc); throws if none has it. */
export async function resolveConfigPath(value: string, yamlPath: string, root?: string): Promise<string> {
  if (isAbsolute(value)) return value;
  const candidates: string[] = [];
  if (root) candidates.push(resolve(root));
  candidates.push(Deno.cwd());
  for (let d = dirname(resolve(yamlPath));; d = dirname(d)) {
    candidates.push(d);
    if (dirname(d) === d) break;
  }
  for (const c of candidates) if (await exists(join(c, value))) return join(c, value);
  throw new BuildInputError(
    `Config "${yamlPath}" names "${value}", which exists under none of: ${candidates.slice(0, 4).join(", ")}, ...` +
      ` (pass --root <dir> to say where its relative paths start)`,
  );
}

// deno-lint-ignore no-explicit-any
type Yaml = Record<string, any>;

/** OmegaConf-style merge: mappings merge recursively, everything else is replaced by the override. */
function merge(base: Yaml, over: Yaml): Yaml {
  const out: Yaml = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && out[k] && typeof out[k] === "object" &&
        !Array.isArray(out[k])
      ? merge(out[k], v)
      : v;
  }
  return out;
}

async function loadYaml(path: string, root: string | undefined, depth = 0): Promise<Yaml> {
  if (depth > 8) throw new BuildInputError(`Config "${path}": "base:" chain is too deep (a cycle?)`);
  let doc: unknown;
  try {
    doc = parseYaml(await Deno.readTextFile(path));
  } catch (e) {
    throw new BuildInputError(`Cannot read config "${path}": ${(e as Error).message}`, { cause: e });
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new BuildInputError(`Config "${path}" is not a mapping`);
  }
  const y = doc as Yaml;
  if (typeof y.base === "string") {
    const basePath = await resolveConfigPath(y.base, path, root);
    const { base: _drop, ...rest } = y;
    return merge(await loadYaml(basePath, root, depth + 1), rest);
  }
  return y;
}

/** Reads a Live2Diff style config (following `base:`), resolving its paths. */
export async function readStyleConfig(path: string, options: { root?: string } = {}): Promise<StyleConfig> {
  const y = await loadYaml(path, options.root);
  const p = (v: unknown, what: string) => {
    if (v === undefined || v === null) return Promise.resolve(undefined);
    if (typeof v !== "string") throw new BuildInputError(`Config "${path}": ${what} must be a path`);
    return resolveConfigPath(v, path, options.root);
  };
  const third = (y.third_party_dict ?? {}) as Yaml;
  const loras: LoraSpec[] = [];
  for (const entry of (third.lora_list ?? []) as Yaml[]) {
    if (typeof entry?.lora !== "string" || typeof entry?.lora_alpha !== "number") {
      throw new BuildInputError(
        `Config "${path}": every lora_list entry needs "lora" (path) and "lora_alpha" (number)`,
      );
    }
    loras.push({ path: (await p(entry.lora, "lora"))!, scale: entry.lora_alpha, convention: "live2diff" });
  }
  const tIndex = y.t_index_list ?? LIVE2DIFF_DEFAULTS.t_index_list;
  if (!Array.isArray(tIndex) || !tIndex.every((t) => Number.isInteger(t) && t >= 0)) {
    throw new BuildInputError(`Config "${path}": t_index_list must be a list of non-negative integers`);
  }
  return {
    path: resolve(path),
    base: await p(y.pretrained_model_path, "pretrained_model_path"),
    motion: await p(y.motion_module_path, "motion_module_path"),
    depth: await p(y.depth_model_path, "depth_model_path"),
    dreambooth: await p(third.dreambooth, "third_party_dict.dreambooth"),
    loras,
    clip_skip: Number(third.clip_skip ?? LIVE2DIFF_DEFAULTS.clip_skip),
    prompt_template: typeof y.prompt_template === "string" ? y.prompt_template : null,
    t_index_list: tIndex,
    num_inference_steps: Number(y.num_inference_steps ?? LIVE2DIFF_DEFAULTS.num_inference_steps),
    unet_additional_kwargs: y.unet_additional_kwargs ?? LIVE2DIFF_DEFAULTS.unet_additional_kwargs,
    noise_scheduler_kwargs: y.noise_scheduler_kwargs ?? LIVE2DIFF_DEFAULTS.noise_scheduler_kwargs,
  };
}

/** Reads a JSON file with a clear error. */
export async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new BuildInputError(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
  }
}

/** The first of `names` that exists in `dir`, or a clear error. */
export async function findFile(dir: string, names: string[], what: string): Promise<string> {
  for (const n of names) if (await exists(join(dir, n))) return join(dir, n);
  throw new BuildInputError(`${what}: none of ${names.join(", ")} in "${dir}"`);
}

/** The files of a diffusers SD1.5 folder the engine uses. */
export interface DiffusersFolder {
  unetWeights: string;
  unetConfig: string;
  textEncoderWeights: string;
  textEncoderConfig: string;
  tokenizerDir: string;
  vaeConfig?: string;
  vaeWeights?: string;
}

/** Locates the parts of a diffusers SD1.5 folder (safetensors only: pickled .bin files are not read). */
export async function diffusersFolder(dir: string): Promise<DiffusersFolder> {
  const what = `SD1.5 folder "${dir}"`;
  const vaeConfig = join(dir, "vae", "config.json");
  const hasVae = await exists(vaeConfig);
  return {
    unetWeights: await findFile(
      join(dir, "unet"),
      ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
      what,
    ),
    unetConfig: await findFile(join(dir, "unet"), ["config.json"], what),
    textEncoderWeights: await findFile(
      join(dir, "text_encoder"),
      ["model.safetensors", "model.fp16.safetensors"],
      what,
    ),
    textEncoderConfig: await findFile(join(dir, "text_encoder"), ["config.json"], what),
    tokenizerDir: join(dir, "tokenizer"),
    vaeConfig: hasVae ? vaeConfig : undefined,
    vaeWeights: hasVae
      ? await findFile(
        join(dir, "vae"),
        ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
        what,
      ).catch(() => undefined)
      : undefined,
  };
}

/** Tokenizer files stored in the engine (as U8 tensors `tokenizer.<file>`). */
export const TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];

/** Streams a file through sha256, with a progress bar for big files. */
export async function hashFile(path: string, role: string, quiet = false): Promise<ProvenanceEntry> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const bar = size > 64 << 20
    ? new Progress(`hash ${basename(path)}`.slice(0, 22), size, { bytes: true, quiet })
    : null;
  const hash = createHash("sha256");
  const buf = new Uint8Array(8 << 20);
  let done = 0;
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    done += n;
    bar?.set(done);
  }
  bar?.finish();
  return { file: basename(path), role, bytes: size, sha256: hash.digest("hex") };
}
