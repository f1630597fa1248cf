/**
 * Engine build: assembles the Live2Diff model from its input files exactly in the order the original
 * loads them, fuses LoRAs, and streams every tensor into an engine file (see `format.ts`).
 *
 * UNet = base 2-D weights (diffusers folder) -> motion modules + depth mapping network from the motion
 * ckpt (`module.` stripped, `grid` keys dropped) -> DreamBooth 2-D keys (LDM single file, converted;
 * unknown keys ignored as `load_state_dict(strict=False)` does, shape mismatches refused) -> style LoRAs
 * (Live2Diff rule by default) -> further LoRAs such as LCM-LoRA (diffusers `fuse_lora` convention).
 * Text encoder likewise (DreamBooth CLIP keys, then LoRA keys containing "text"). TAESD and MiDaS are
 * copied. Memory stays at about one tensor: sources are read one at a time and written immediately.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { type CheckpointFile, openCheckpoint } from "../ffi/formats/mod.ts";
import { type DType, type HostTensor, numel } from "../ffi/host_tensor.ts";
import {
  type EngineHeader,
  type EngineStyle,
  type EngineTarget,
  EngineWriter,
  type ProvenanceEntry,
  type TensorPlan,
  weightDtype,
} from "./format.ts";
import { ldmUnetKey, mapLdmKey, type UnetLayoutConfig } from "./ldm_convert.ts";
import { applyLoras, type LoraFile, type LoraSpec, ModuleIndex, openLora } from "./lora.ts";
import { Progress } from "./progress.ts";
import {
  BuildInputError,
  diffusersFolder,
  findFile,
  hashFile,
  LIVE2DIFF_DEFAULTS,
  readJson,
  readStyleConfig,
  SD15_TEXT_ENCODER_CONFIG,
  SD15_UNET_CONFIG,
  SD15_VAE_CONFIG,
  TOKENIZER_FILES,
} from "./sources.ts";

/** Inputs and settings of {@linkcode buildEngine}. */
export interface BuildEngineOptions {
  /** Output engine path. */
  out: string;
  target: EngineTarget;
  /** Diffusers SD1.5 folder (unet/, text_encoder/, tokenizer/, scheduler/). */
  base?: string;
  /** Single-file LDM checkpoint (.safetensors/.ckpt) overlaid on the base, or the whole base when `base` is unset. */
  dreambooth?: string;
  /** Motion modules + depth mapping network (live2diff.ckpt). */
  motion: string;
  /** MiDaS weights (dpt_hybrid_384.pt). */
  depth: string;
  /** TAESD diffusers folder. */
  taesd: string;
  /** Tokenizer folder (default: `<base>/tokenizer`; required without a base). */
  tokenizer?: string;
  /** LoRAs in fusing order. */
  loras: LoraSpec[];
  style?: Partial<EngineStyle>;
  unetAdditionalKwargs?: Record<string, unknown>;
  noiseSchedulerKwargs?: Record<string, unknown>;
  /** No progress bars. */
  quiet?: boolean;
  /** Receives warnings and notes (default: stderr). */
  log?: (message: string) => void;
}

/** What {@linkcode buildEngine} reports. */
export interface BuildReport {
  path: string;
  header: EngineHeader;
  bytes: number;
  seconds: number;
  warnings: string[];
  /** Number of LoRA pairs fused. */
  loraPairs: number;
}

/** A tensor to be written: its engine name, source dtype/shape and how to read it. */
interface Source {
  name: string;
  dtype: DType;
  shape: number[];
  read: () => Promise<HostTensor>;
  /** Model and key LoRAs are matched against. */
  lora?: { model: "unet" | "text_encoder"; key: string };
}

const FLOAT_DTYPES: ReadonlySet<DType> = new Set(["F32", "F16", "BF16"]);

/** Converts a tensor's bytes to F32 or F16 (fast paths through Float16Array). */
export function convertTensor(t: HostTensor, to: "F32" | "F16"): Uint8Array {
  if (t.dtype === to) return t.data;
  const aligned = t.data.byteOffset % 4 === 0 ? t.data : t.data.slice();
  const n = numel(t.shape);
  let f32: Float32Array;
  if (t.dtype === "F32") f32 = new Float32Array(aligned.buffer, aligned.byteOffset, n);
  else if (t.dtype === "F16") f32 = new Float32Array(new Float16Array(aligned.buffer, aligned.byteOffset, n));
  else if (t.dtype === "BF16") {
    const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n), bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
    f32 = new Float32Array(bits.buffer);
  } else throw new TypeError(`Cannot convert ${t.dtype} to ${to}`);
  if (to === "F32") return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  const half = new Float16Array(f32);
  return new Uint8Array(half.buffer);
}

/** Float32 values of a float tensor (a view when already F32 and aligned). */
function asFloat32(t: HostTensor): Float32Array {
  const bytes = convertTensor(t, "F32");
  return bytes.byteOffset % 4 === 0
    ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
    : new Float32Array(bytes.slice().buffer);
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Builds an engine from a Live2Diff style config, with CLI overrides. */
export async function buildFromStyleConfig(
  yamlPath: string,
  overrides: Partial<BuildEngineOptions> & { out: string; target: EngineTarget; root?: string },
): Promise<BuildReport> {
  const style = await readStyleConfig(yamlPath, { root: overrides.root });
  const need = (v: string | undefined, what: string) => {
    if (!v) throw new BuildInputError(`Config "${yamlPath}" has no ${what}; pass it on the command line`);
    return v;
  };
  return await buildEngine({
    base: style.base,
    dreambooth: style.dreambooth,
    motion: need(overrides.motion ?? style.motion, "motion_module_path (--motion)"),
    depth: need(overrides.depth ?? style.depth, "depth_model_path (--depth)"),
    taesd: need(overrides.taesd, "TAESD folder (--taesd)"),
    style: {
      clip_skip: style.clip_skip,
      prompt_template: style.prompt_template,
      t_index_list: style.t_index_list,
      num_inference_steps: style.num_inference_steps,
    },
    unetAdditionalKwargs: style.unet_additional_kwargs,
    noiseSchedulerKwargs: style.noise_scheduler_kwargs,
    ...overrides,
    loras: [...style.loras, ...(overrides.loras ?? [])],
  });
}

/** Builds an engine (see the module doc for the loading order). */
export async function buildEngine(o: BuildEngineOptions): Promise<BuildReport> {
  const started = performance.now();
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    (o.log ?? ((s: string) => console.error(`warning: ${s}`)))(m);
  };
  if (!o.base && !o.dreambooth) throw new BuildInputError("Cannot build: give a base model (--base or a config)");
  const files: CheckpointFile[] = [];
  const open = async (path: string) => {
    const f = await openCheckpoint(path);
    files.push(f);
    return f;
  };
  const loras: LoraFile[] = [];
  const provenance: ProvenanceEntry[] = [];
  const hash = async (path: string, role: string, extra: Partial<ProvenanceEntry> = {}) =>
    provenance.push({ ...(await hashFile(path, role, o.quiet)), ...extra });
  try {
    // ---- UNet and text encoder key sets, in loading order --------------------------------------------
    const unet = new Map<string, Source>();
    const te = new Map<string, Source>();
    const fromFile = (
      f: CheckpointFile,
      key: string,
      name: string,
      model?: "unet" | "text_encoder",
      shape?: number[],
    ): Source => {
      const info = f.info(key);
      const s = shape ?? info.shape;
      return {
        name,
        dtype: info.dtype,
        shape: s,
        read: async () => ({ ...(await f.read(key)), shape: s }),
        lora: model ? { model, key: name.slice(model.length + 1) } : undefined,
      };
    };
    let unetConfig: Record<string, unknown>, teConfig: Record<string, unknown>;
    let vaeConfig: Record<string, unknown> = SD15_VAE_CONFIG;
    let vaeBase: CheckpointFile | undefined;
    let tokenizerDir = o.tokenizer;
    if (o.base) {
      const folder = await diffusersFolder(o.base);
      unetConfig = await readJson(folder.unetConfig);
      teConfig = await readJson(folder.textEncoderConfig);
      tokenizerDir ??= folder.tokenizerDir;
      if (folder.vaeConfig) vaeConfig = await readJson(folder.vaeConfig);
      if (folder.vaeWeights) vaeBase = await open(folder.vaeWeights);
      const u = await open(folder.unetWeights);
      for (const k of u.names) unet.set(k, fromFile(u, k, `unet.${k}`, "unet"));
      const t = await open(folder.textEncoderWeights);
      for (const k of t.names) te.set(k, fromFile(t, k, `text_encoder.${k}`, "text_encoder"));
      await hash(folder.unetWeights, "unet");
      await hash(folder.textEncoderWeights, "text_encoder");
    } else {
      unetConfig = { ...SD15_UNET_CONFIG };
      teConfig = { ...SD15_TEXT_ENCODER_CONFIG };
      if (!tokenizerDir) throw new BuildInputError("Without a base folder, --tokenizer <dir> is required");
    }
    // Motion modules and the depth mapping network: loaded after the 2-D weights (strict=False).
    const motion = await open(o.motion);
    let motionKeys = 0;
    for (const raw of motion.names) {
      const k = raw.replaceAll("module.", "");
      if (k.includes("grid")) continue;
      if (!k.includes("motion_modules.") && !k.startsWith("flow_conv_in.")) {
        throw new BuildInputError(
          `Motion-module ckpt "${o.motion}" has key "${raw}", which is neither a motion module nor the depth mapping ` +
            `network (Live2Diff asserts there are no unexpected keys)`,
        );
      }
      unet.set(k, fromFile(motion, raw, `unet.${k}`, "unet"));
      motionKeys++;
    }
    if (motionKeys === 0) throw new BuildInputError(`Motion-module ckpt "${o.motion}" has no motion-module keys`);
    await hash(o.motion, "motion_module");

    // DreamBooth single file: replaces 2-D UNet keys and CLIP keys (strict=False), VAE validated only.
    if (o.dreambooth) {
      const db = await open(o.dreambooth);
      const layout = unetConfig as unknown as UnetLayoutConfig;
      const vaeKeys: string[] = [];
      let ignored = 0, replaced = 0;
      for (const key of db.names) {
        const m = mapLdmKey(key, layout, vaeConfig as { block_out_channels: number[] });
        if (!m) continue;
        if (m.model === "vae") {
          vaeKeys.push(m.name);
          continue;
        }
        const target = m.model === "unet" ? unet : te;
        const existing = target.get(m.name);
        const shape = db.info(key).shape;
        if (!existing) {
          if (o.base) {
            ignored++;
            continue;
          }
        } else if (!sameShape(existing.shape, shape)) {
          throw new BuildInputError(
            `DreamBooth "${o.dreambooth}": "${key}" has shape [${shape}] but the model's "${m.name}" is [${existing.shape}]` +
              ` (is it an SD1.x checkpoint?)`,
          );
        }
        target.set(m.name, fromFile(db, key, `${m.model}.${m.name}`, m.model));
        replaced++;
      }
      if (replaced === 0) {
        throw new BuildInputError(`DreamBooth "${o.dreambooth}" has no LDM UNet/CLIP keys (model.diffusion_model.*)`);
      }
      if (ignored) warn(`DreamBooth: ${ignored} converted keys are not in the model and were ignored (strict=False)`);
      if (!db.names.some((k) => k.startsWith("cond_stage_model.transformer.text_model."))) {
        warn(
          `DreamBooth "${basename(o.dreambooth)}" has no "cond_stage_model.transformer.text_model." keys: ` +
            `its text encoder (if any) is ignored, as Live2Diff's strict=False load does`,
        );
      }
      if (vaeBase) {
        const want = new Set(vaeBase.names);
        const missing = [...want].filter((k) => !vaeKeys.includes(k)).length;
        const extra = vaeKeys.filter((k) => !want.has(k)).length;
        if (missing || extra) {
          warn(
            `DreamBooth VAE: ${missing} missing / ${extra} unexpected keys; Live2Diff's strict VAE load would ` +
              `refuse this file. The engine does not need it (TAESD replaces the VAE).`,
          );
        }
      }
      await hash(o.dreambooth, "dreambooth");
    }

    // ---- LoRAs --------------------------------------------------------------------------------------
    const layout = unetConfig as unknown as UnetLayoutConfig;
    const models = {
      unet: new ModuleIndex([...unet.keys()]),
      textEncoder: new ModuleIndex([...te.keys()]),
      // Kohya files in LDM naming: probe the block prefix with an attention key, then a resnet key.
      ldm: (prefix: string) => {
        const attn = ldmUnetKey(`${prefix}proj_in.weight`, layout);
        if (attn) return attn.slice(0, -"proj_in.weight".length);
        const res = ldmUnetKey(`${prefix}in_layers.0.weight`, layout);
        return res ? res.slice(0, -"norm1.weight".length) : null;
      },
    };
    for (const spec of o.loras) {
      const lora = await openLora(spec, models);
      loras.push(lora);
      for (const t of lora.targets) {
        const src = (t.model === "unet" ? unet : te).get(t.weight);
        if (!src) throw new BuildInputError(`LoRA "${spec.path}": the ${t.model} has no weight "${t.weight}"`);
      }
      await hash(spec.path, "lora", { lora_scale: spec.scale, lora_convention: spec.convention });
    }

    // ---- tokenizer, TAESD, MiDaS ----------------------------------------------------------------------
    const extra: Source[] = [];
    const tokenizerFiles: Record<string, string> = {};
    for (const name of TOKENIZER_FILES) {
      const path = join(tokenizerDir!, name);
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(path);
      } catch {
        if (name === "vocab.json" || name === "merges.txt") {
          throw new BuildInputError(`Tokenizer folder "${tokenizerDir}" has no ${name}`);
        }
        continue;
      }
      tokenizerFiles[name] = `tokenizer.${name}`;
      extra.push({
        name: `tokenizer.${name}`,
        dtype: "U8",
        shape: [bytes.byteLength],
        read: () => Promise.resolve({ dtype: "U8", shape: [bytes.byteLength], data: bytes }),
      });
    }
    const special = await readJson(join(tokenizerDir!, "tokenizer_config.json")).catch(() => ({}));
    const taesdWeights = await findFile(o.taesd, ["diffusion_pytorch_model.safetensors"], `TAESD folder "${o.taesd}"`);
    const taesdConfig = await readJson(join(o.taesd, "config.json"));
    const taesd = await open(taesdWeights);
    for (const k of taesd.names) extra.push(fromFile(taesd, k, `taesd.${k}`));
    await hash(taesdWeights, "taesd");
    const midas = await open(o.depth);
    for (const k of midas.names) extra.push(fromFile(midas, k, `midas.${k}`));
    await hash(o.depth, "midas");
    const midasSpec = await readJson(o.depth.replace(/\.[^./]+$/, ".json")).catch(() => undefined);

    // ---- write ----------------------------------------------------------------------------------------
    const sources = [...unet.values(), ...te.values(), ...extra];
    const wdt = weightDtype(o.target);
    const plans: TensorPlan[] = sources.map((s) => ({
      name: s.name,
      shape: s.shape,
      dtype: FLOAT_DTYPES.has(s.dtype) ? wdt : s.dtype,
    }));
    const vaeLevels = (vaeConfig.block_out_channels as unknown[] | undefined)?.length ?? 4;
    const header = {
      target: o.target,
      components: {
        unet: {
          ...unetConfig,
          unet_additional_kwargs: o.unetAdditionalKwargs ?? LIVE2DIFF_DEFAULTS.unet_additional_kwargs,
        },
        text_encoder: teConfig,
        tokenizer: { files: tokenizerFiles, ...special },
        taesd: taesdConfig,
        midas: {
          architecture: "DPTDepthModel",
          backbone: "vitb_rn50_384",
          non_negative: true,
          ...(midasSpec ? { spec: midasSpec } : {}),
        },
        scheduler: {
          _class_name: "LCMScheduler",
          note:
            "built by Live2Diff as LCMScheduler.from_config(DDIMScheduler(**noise_scheduler_kwargs)); the base folder's scheduler_config.json is ignored",
          ...(o.noiseSchedulerKwargs ?? LIVE2DIFF_DEFAULTS.noise_scheduler_kwargs),
        },
        pipeline: { vae_scale_factor: 2 ** (vaeLevels - 1), warmup_frames: 8 },
      },
      style: {
        clip_skip: o.style?.clip_skip ?? LIVE2DIFF_DEFAULTS.clip_skip,
        prompt_template: o.style?.prompt_template ?? null,
        t_index_list: o.style?.t_index_list ?? LIVE2DIFF_DEFAULTS.t_index_list,
        num_inference_steps: o.style?.num_inference_steps ?? LIVE2DIFF_DEFAULTS.num_inference_steps,
      },
      provenance,
    };
    await Deno.mkdir(dirname(o.out), { recursive: true }).catch(() => {});
    const writer = await EngineWriter.create(o.out, header, plans);
    const totalBytes = plans.reduce(
      (n, p) => n + numel(p.shape) * (p.dtype === "F32" ? 4 : p.dtype === "F16" ? 2 : 1),
      0,
    );
    const bar = new Progress(`write ${basename(o.out)}`.slice(0, 22), totalBytes, { bytes: true, quiet: o.quiet });
    let loraPairs = 0;
    try {
      for (let i = 0; i < sources.length; i++) {
        const s = sources[i]!, plan = plans[i]!;
        let t = await s.read();
        if (s.lora && FLOAT_DTYPES.has(t.dtype)) {
          const w = asFloat32(t);
          const copy = w.buffer === t.data.buffer ? w.slice() : w;
          const n = await applyLoras(loras, s.lora.model, s.lora.key, copy, s.shape);
          if (n) {
            loraPairs += n;
            t = { dtype: "F32", shape: s.shape, data: new Uint8Array(copy.buffer) };
          }
        }
        const data = FLOAT_DTYPES.has(t.dtype) ? convertTensor(t, plan.dtype as "F32" | "F16") : t.data;
        await writer.write(s.name, data);
        bar.set(writer.bytesWritten);
      }
      bar.finish();
      const expected = loras.reduce((n, l) => n + l.targets.length, 0);
      if (loraPairs !== expected) throw new BuildInputError(`Only ${loraPairs} of ${expected} LoRA pairs were fused`);
      const written = await writer.finish();
      return {
        path: o.out,
        header: written,
        bytes: (await Deno.stat(o.out)).size,
        seconds: (performance.now() - started) / 1000,
        warnings,
        loraPairs,
      };
    } catch (e) {
      await writer.abort();
      throw e;
    }
  } finally {
    for (const l of loras) l.close();
    for (const f of files) f.close();
  }
}
