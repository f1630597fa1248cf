/**
 * LoRA files: parsing the common layouts, resolving their module names against a model's key set, and
 * fusing `W += factor * up @ down` into the weights as the engine streams them.
 *
 * Supported key layouts (one file may only use one):
 * - **kohya / sd-scripts**: `lora_unet_<module path with "_">.lora_down.weight`, `.lora_up.weight`,
 *   optional `.alpha`; `lora_te_<...>` for the text encoder. The path is resolved greedily against the
 *   model's module names exactly like Live2Diff's `convert_lora_model_level` (`down_blocks_0_...` ->
 *   `down_blocks.0....`); paths in LDM naming (`input_blocks_4_1_...`, `middle_block_1_...`,
 *   `output_blocks_...`) are translated with the UNet config first.
 * - **PEFT**: `<prefix><module>.lora_A.weight` / `.lora_B.weight` (also `.lora_A.default.weight`), prefix
 *   `unet.`, `text_encoder.`, `base_model.model.` or none (= UNet); alpha from `<module>.alpha` keys, an
 *   `adapter_config.json` next to the file (`r`, `lora_alpha`, `alpha_pattern`), or rank (factor 1).
 * - **diffusers (pre-PEFT)**: `<prefix><module>.lora.down.weight` / `.lora.up.weight`, and attention
 *   processors `<...>.processor.to_q_lora.down.weight` (`to_out_lora` -> `to_out.0`); alpha as for PEFT.
 *
 * Conventions (how the product is scaled):
 * - `live2diff` (default for style LoRAs, fidelity to the original): `W += scale * up @ down`; the file's
 *   alpha and the rank are IGNORED, and keys containing `conv_in` only update input channels 0..3.
 * - `kohya` (the usual convention of other tools): `W += scale * (alpha / rank) * up @ down`.
 * - `diffusers` (`load_lora_weights` + `fuse_lora(lora_scale)`, e.g. LCM-LoRA): same formula as `kohya`,
 *   alpha defaulting to the rank.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { type CheckpointFile, openCheckpoint } from "../ffi/formats/mod.ts";
import { numel, toFloat32 } from "../ffi/host_tensor.ts";

/** How a LoRA's product is scaled (see the module doc). */
export type LoraConvention = "live2diff" | "kohya" | "diffusers";

/** A LoRA to fuse. */
export interface LoraSpec {
  path: string;
  scale: number;
  convention: LoraConvention;
}

/** One low-rank pair of a LoRA file, resolved to the weight it updates. */
export interface LoraTarget {
  /** `unet` or `text_encoder`. */
  model: "unet" | "text_encoder";
  /** Model key of the weight (e.g. `down_blocks.0.attentions.0.proj_in.weight`). */
  weight: string;
  /** File keys of the up (B) and down (A) matrices. */
  upKey: string;
  downKey: string;
  /** File key of the alpha scalar, if any. */
  alphaKey?: string;
  /** Alpha from an adapter config (PEFT), if any. */
  alpha?: number;
  /** Live2Diff's `conv_in` special case applies (key contains "conv_in"). */
  convIn: boolean;
}

/** Key layout of a LoRA file. */
export type LoraLayout = "kohya" | "peft" | "diffusers";

/** Error for LoRA files that cannot be parsed or applied. */
export class LoraError extends Error {
  override name = "LoraError";
}

/** Detects the key layout of a LoRA file from its names. */
export function detectLoraLayout(names: readonly string[]): LoraLayout {
  if (names.some((n) => /\.lora_down\.weight$/.test(n) && /^lora_/.test(n))) return "kohya";
  if (names.some((n) => /\.lora_[AB](\.[^.]+)?\.weight$/.test(n))) return "peft";
  if (names.some((n) => /(\.lora|_lora)\.(down|up)\.weight$/.test(n))) return "diffusers";
  throw new LoraError(
    `Not a LoRA file: no kohya (.lora_down/.lora_up), PEFT (.lora_A/.lora_B) or diffusers (.lora.down/.lora.up) keys`,
  );
}

/** Whether a module path prefix exists in a key set (some key is `prefix.<...>`). */
export class ModuleIndex {
  #prefixes = new Set<string>();
  constructor(readonly keys: readonly string[]) {
    for (const k of keys) {
      const parts = k.split(".");
      for (let i = 1; i < parts.length; i++) this.#prefixes.add(parts.slice(0, i).join("."));
    }
  }
  /** True when `path` names a module (has parameters under it). */
  hasModule(path: string): boolean {
    return this.#prefixes.has(path);
  }
}

/**
 * Resolves an underscore-joined module path greedily, like Live2Diff's `convert_lora_model_level`:
 * take the next `_`-separated token; if it is a child module, descend; otherwise glue the following token
 * on with `_` and try again. Returns the dotted path, or null when it cannot be resolved.
 */
export function resolveKohyaPath(path: string, index: ModuleIndex, root = ""): string | null {
  const tokens = path.split("_");
  let current = root;
  let name = tokens.shift()!;
  while (true) {
    const candidate = current ? `${current}.${name}` : name;
    if (index.hasModule(candidate)) {
      current = candidate;
      if (tokens.length === 0) return current;
      name = tokens.shift()!;
    } else {
      if (tokens.length === 0) return null;
      name = name.length > 0 ? `${name}_${tokens.shift()}` : tokens.shift()!;
    }
  }
}

/** UNet layout used to translate LDM-named kohya paths. */
export interface LdmPathTranslator {
  /** Maps e.g. `input_blocks.4.1.` to `down_blocks.1.attentions.0.`; null when not an LDM block. */
  (ldmBlockPrefix: string): string | null;
}

const LDM_RESNET_TOKENS: ReadonlyArray<[string, string]> = [
  ["in_layers_0", "norm1"],
  ["in_layers_2", "conv1"],
  ["emb_layers_1", "time_emb_proj"],
  ["out_layers_0", "norm2"],
  ["out_layers_3", "conv2"],
  ["skip_connection", "conv_shortcut"],
];

function resolveLdmKohyaPath(path: string, index: ModuleIndex, translate?: LdmPathTranslator): string | null {
  if (!translate) return null;
  const m = /^(input_blocks|output_blocks)_(\d+)_(\d+)_(.+)$/.exec(path) ?? /^(middle_block)_(\d+)_(.+)$/.exec(path);
  if (!m) return null;
  const ldmPrefix = m[1] === "middle_block" ? `middle_block.${m[2]}.` : `${m[1]}.${m[2]}.${m[3]}.`;
  let rest = m[1] === "middle_block" ? m[3]! : m[4]!;
  for (const [from, to] of LDM_RESNET_TOKENS) if (rest.startsWith(from)) rest = to + rest.slice(from.length);
  const base = translate(ldmPrefix);
  if (!base) return null;
  return resolveKohyaPath(rest, index, base.replace(/\.$/, ""));
}

/** Reads `adapter_config.json` next to a PEFT LoRA, if present. */
async function adapterConfig(
  path: string,
): Promise<{ r?: number; lora_alpha?: number; alpha_pattern?: Record<string, number> } | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dirname(path), "adapter_config.json")));
  } catch {
    return null;
  }
}

/** An opened LoRA with its resolved targets. Close it when the build is done. */
export class LoraFile implements Disposable {
  constructor(
    readonly spec: LoraSpec,
    readonly file: CheckpointFile,
    readonly layout: LoraLayout,
    readonly targets: LoraTarget[],
  ) {}

  /**
   * The factor `up @ down` is multiplied with for one target: `scale` (live2diff) or
   * `scale * alpha / rank` (kohya, diffusers), alpha defaulting to the rank.
   */
  async factor(t: LoraTarget): Promise<number> {
    if (this.spec.convention === "live2diff") return this.spec.scale;
    const rank = this.file.info(t.downKey).shape[0]!;
    let alpha = t.alpha ?? rank;
    if (t.alphaKey) alpha = toFloat32(await this.file.read(t.alphaKey))[0]!;
    return this.spec.scale * alpha / rank;
  }

  close(): void {
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The key sets a LoRA is resolved against. */
export interface LoraModels {
  unet: ModuleIndex;
  textEncoder: ModuleIndex;
  /** Translates LDM block prefixes (for kohya files in LDM naming). */
  ldm?: LdmPathTranslator;
}

/**
 * Opens a LoRA file and resolves every pair to a model weight. Throws {@linkcode LoraError} naming the key
 * when a module cannot be found or a pair is incomplete.
 */
export async function openLora(spec: LoraSpec, models: LoraModels): Promise<LoraFile> {
  const file = await openCheckpoint(spec.path);
  try {
    const layout = detectLoraLayout(file.names);
    const targets = layout === "kohya"
      ? kohyaTargets(file, models)
      : await diffusersTargets(file, models, layout, spec.path);
    return new LoraFile(spec, file, layout, targets);
  } catch (e) {
    file.close();
    if (e instanceof LoraError) throw new LoraError(`LoRA "${spec.path}": ${e.message}`, { cause: e });
    throw e;
  }
}

function kohyaTargets(file: CheckpointFile, models: LoraModels): LoraTarget[] {
  const out: LoraTarget[] = [];
  for (const key of file.names) {
    if (!key.endsWith(".lora_down.weight")) continue;
    const module = key.split(".")[0]!;
    const upKey = key.replace("lora_down", "lora_up");
    if (!file.has(upKey)) throw new LoraError(`"${key}" has no matching "${upKey}"`);
    // Live2Diff's rule: any key containing "text" belongs to the text encoder.
    const isText = key.includes("text");
    const path = isText ? module.split("lora_te_").pop()! : module.split("lora_unet_").pop()!;
    const index = isText ? models.textEncoder : models.unet;
    const resolved = resolveKohyaPath(path, index) ?? (isText ? null : resolveLdmKohyaPath(path, index, models.ldm));
    if (!resolved) {
      throw new LoraError(`cannot find the module of "${key}" in the ${isText ? "text encoder" : "UNet"}`);
    }
    const alphaKey = `${module}.alpha`;
    out.push({
      model: isText ? "text_encoder" : "unet",
      weight: `${resolved}.weight`,
      upKey,
      downKey: key,
      alphaKey: file.has(alphaKey) ? alphaKey : undefined,
      convIn: upKey.includes("conv_in"),
    });
  }
  return out;
}

async function diffusersTargets(
  file: CheckpointFile,
  models: LoraModels,
  layout: LoraLayout,
  path: string,
): Promise<LoraTarget[]> {
  const config = layout === "peft" ? await adapterConfig(path) : null;
  const out: LoraTarget[] = [];
  const downRe = layout === "peft" ? /^(.*)\.lora_A(\.[^.]+)?\.weight$/ : /^(.*?)(\.lora|_lora)\.down\.weight$/;
  for (const key of file.names) {
    const m = downRe.exec(key);
    if (!m) continue;
    const upKey = layout === "peft"
      ? key.replace(/\.lora_A(\.[^.]+)?\.weight$/, `.lora_B${m[2] ?? ""}.weight`)
      : key.replace(/down\.weight$/, "up.weight");
    if (!file.has(upKey)) throw new LoraError(`"${key}" has no matching "${upKey}"`);
    let module = m[1]!;
    // Attention-processor layout: `attn1.processor.to_q_lora` -> `attn1.to_q`, `to_out_lora` -> `to_out.0`.
    if (layout === "diffusers" && m[2] === "_lora") {
      module = module.replace(/\.processor\.(to_[qkv])$/, ".$1").replace(/\.processor\.to_out$/, ".to_out.0");
    }
    let model: "unet" | "text_encoder" = "unet";
    for (
      const [prefix, which] of [["unet.", "unet"], ["text_encoder.", "text_encoder"], [
        "base_model.model.",
        "unet",
      ]] as const
    ) {
      if (module.startsWith(prefix)) {
        module = module.slice(prefix.length);
        model = which;
        break;
      }
    }
    const index = model === "unet" ? models.unet : models.textEncoder;
    if (!index.hasModule(module)) throw new LoraError(`"${key}": the ${model} has no module "${module}"`);
    const alphaKey = [`${m[1]}.alpha`, `${module}.alpha`].find((k) => file.has(k));
    const patternAlpha = config?.alpha_pattern
      ? Object.entries(config.alpha_pattern).find(([p]) => module.endsWith(p))?.[1]
      : undefined;
    out.push({
      model,
      weight: `${module}.weight`,
      upKey,
      downKey: key,
      alphaKey,
      alpha: patternAlpha ?? config?.lora_alpha,
      convIn: upKey.includes("conv_in"),
    });
  }
  return out;
}

/**
 * Adds `factor * up @ down` to the float32 weight `w` (shape `wShape`), in place. `up` is `[out, r, ...]`,
 * `down` `[r, ...]`; the product `[out, K]` is laid over `w` in C order. With `convIn4` (Live2Diff's conv_in
 * rule) the product covers only input channels 0..3 of a conv weight `[out, in, kh, kw]`.
 * The product is accumulated in float64 and rounded once, then added in float32 as torch does.
 */
export function fuseInto(
  w: Float32Array,
  wShape: readonly number[],
  up: Float32Array,
  upShape: readonly number[],
  down: Float32Array,
  downShape: readonly number[],
  factor: number,
  convIn4 = false,
): void {
  const out = upShape[0]!, r = downShape[0]!;
  if (up.length !== out * r) throw new LoraError(`up ${JSON.stringify(upShape)} is not [out, ${r}, 1, 1]`);
  const K = down.length / r;
  if (wShape[0] !== out) {
    throw new LoraError(`up ${JSON.stringify(upShape)} does not fit weight ${JSON.stringify(wShape)}`);
  }
  const rowLen = w.length / out;
  // Which slice of each output row the product covers.
  let width = rowLen, inner = 1;
  if (convIn4) {
    inner = wShape.slice(2).reduce((a, b) => a * b, 1);
    width = 4 * inner;
  }
  if (K !== width) {
    throw new LoraError(
      `down ${JSON.stringify(downShape)} x up ${JSON.stringify(upShape)} does not fit weight ${
        JSON.stringify(wShape)
      }` +
        (convIn4 ? " (conv_in rule: input channels 0..3)" : ""),
    );
  }
  const f32 = Math.fround(factor);
  for (let o = 0; o < out; o++) {
    const base = o * rowLen;
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += up[o * r + j]! * down[j * K + k]!;
      const d = Math.fround(f32 * Math.fround(s));
      w[base + k] = Math.fround(w[base + k]! + d);
    }
  }
}

/** Fuses every pair of `loras` targeting `model.weightKey` into `w`. Returns how many were applied. */
export async function applyLoras(
  loras: readonly LoraFile[],
  model: "unet" | "text_encoder",
  weightKey: string,
  w: Float32Array,
  wShape: readonly number[],
): Promise<number> {
  let applied = 0;
  for (const lora of loras) {
    for (const t of lora.targets) {
      if (t.model !== model || t.weight !== weightKey) continue;
      const up = await lora.file.read(t.upKey), down = await lora.file.read(t.downKey);
      // Live2Diff always uses its conv_in rule; the other conventions only when the product is narrower
      // than the weight (a 4-channel LoRA on a conv_in with extra input channels).
      const product = up.shape[0]! * (numel(down.shape) / down.shape[0]!);
      const convIn4 = t.convIn && (lora.spec.convention === "live2diff" || product !== w.length);
      fuseInto(w, wShape, toFloat32(up), up.shape, toFloat32(down), down.shape, await lora.factor(t), convIn4);
      applied++;
    }
  }
  return applied;
}

/** Parses a CLI LoRA argument `path[:scale[:convention]]` (scale defaults to 1). */
export function parseLoraArg(arg: string, defaultConvention: LoraConvention): LoraSpec {
  const m = /^(.*?)(?::(-?[0-9.eE+-]+))?(?::(live2diff|kohya|diffusers))?$/.exec(arg);
  if (!m || !m[1]) throw new TypeError(`Bad --lora "${arg}": expected path[:scale[:live2diff|kohya|diffusers]]`);
  const scale = m[2] === undefined ? 1 : Number(m[2]);
  if (!Number.isFinite(scale)) throw new TypeError(`Bad --lora scale in "${arg}"`);
  return { path: m[1], scale, convention: (m[3] as LoraConvention | undefined) ?? defaultConvention };
}
