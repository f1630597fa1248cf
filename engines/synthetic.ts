/**
 * Synthetic engines: every weight drawn with the Philox weight rule of the golden README (key `(seed, 0)`,
 * counter `(b, 0, fnv1a32(name), "WEIG")`), so benchmarks, full-shape tests and the demo run without real
 * weights. Presets:
 * - `tiny`: the golden tiny models (names/shapes/configs in presets/tiny.json, made from the golden
 *   `models/` by scripts/make_presets.ts; seeds 1001 UNet, 1002 CLIP, 1003 TAESD, 1004 reduced MiDaS)
 *   — the same weights as an engine built from those files.
 * - `sd15`: full size (presets/sd15.json) — the real SD1.5 + Live2Diff UNet (names/shapes of the `unet_full_shapes` manifest,
 *   seed 1007 as in that case), a CLIP ViT-L text encoder (SD1.5 config, seed 1002), TAESD at its real
 *   default size (seed 1003), the real DPT-Hybrid (midas manifest, seed 1005).
 * Buffers are not parameters: `pos_encoder.pe` gets the sinusoidal table the module computes itself.
 * Weights are generated natively ({@linkcode TensorMap.setPhilox}) one tensor at a time and streamed out.
 *
 * @module
 */

import { fromFloat32 } from "../ffi/host_tensor.ts";
import { TensorMap } from "../ffi/native.ts";
import { convertTensor } from "./build.ts";
import { type EngineHeader, type EngineTarget, EngineWriter, type TensorPlan, weightDtype } from "./format.ts";
import { Progress } from "./progress.ts";
import { LIVE2DIFF_DEFAULTS, SD15_TEXT_ENCODER_CONFIG, TOKENIZER_FILES } from "./sources.ts";

/** Synthetic presets. */
export type SyntheticPreset = "tiny" | "sd15";

/** Philox seeds per component and preset (golden README "Seeds"). */
export const SYNTHETIC_SEEDS: Record<SyntheticPreset, Record<"unet" | "text_encoder" | "taesd" | "midas", number>> = {
  tiny: { unet: 1001, text_encoder: 1002, taesd: 1003, midas: 1004 },
  sd15: { unet: 1007, text_encoder: 1002, taesd: 1003, midas: 1005 },
};

type Shapes = Array<[string, number[]]>;

/** Names and shapes of a CLIPTextModel with this config, in HF state-dict order. */
export function clipTextShapes(
  c: {
    vocab_size: number;
    hidden_size: number;
    intermediate_size: number;
    num_hidden_layers: number;
    max_position_embeddings: number;
  },
): Shapes {
  const H = c.hidden_size, I = c.intermediate_size;
  const out: Shapes = [
    ["text_model.embeddings.token_embedding.weight", [c.vocab_size, H]],
    ["text_model.embeddings.position_embedding.weight", [c.max_position_embeddings, H]],
  ];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `text_model.encoder.layers.${i}`;
    for (const proj of ["k_proj", "v_proj", "q_proj", "out_proj"]) {
      out.push([`${p}.self_attn.${proj}.weight`, [H, H]], [`${p}.self_attn.${proj}.bias`, [H]]);
    }
    out.push([`${p}.layer_norm1.weight`, [H]], [`${p}.layer_norm1.bias`, [H]]);
    out.push([`${p}.mlp.fc1.weight`, [I, H]], [`${p}.mlp.fc1.bias`, [I]]);
    out.push([`${p}.mlp.fc2.weight`, [H, I]], [`${p}.mlp.fc2.bias`, [H]]);
    out.push([`${p}.layer_norm2.weight`, [H]], [`${p}.layer_norm2.bias`, [H]]);
  }
  out.push(["text_model.final_layer_norm.weight", [H]], ["text_model.final_layer_norm.bias", [H]]);
  return out;
}

/** The sinusoidal PE table `[1, L, C]` of AnimateDiff's PositionalEncoding (float64 math, float32 result). */
export function sinusoidalPe(shape: readonly number[]): Float32Array {
  const L = shape[1]!, C = shape[2]!;
  const out = new Float32Array(L * C);
  for (let p = 0; p < L; p++) {
    for (let i = 0; i < C; i += 2) {
      const div = Math.exp(i * (-Math.log(10000) / C));
      out[p * C + i] = Math.sin(p * div);
      if (i + 1 < C) out[p * C + i + 1] = Math.cos(p * div);
    }
  }
  return out;
}

/** Options of {@linkcode makeSyntheticEngine}. */
export interface SyntheticOptions {
  preset: SyntheticPreset;
  target: EngineTarget;
  out: string;
  quiet?: boolean;
}

/** Writes a synthetic engine; returns its header, size and build time. */
export async function makeSyntheticEngine(
  o: SyntheticOptions,
): Promise<{ header: EngineHeader; bytes: number; seconds: number }> {
  const started = performance.now();
  const seeds = SYNTHETIC_SEEDS[o.preset];
  // Names, shapes and configs come from the committed presets (scripts/make_presets.ts), so no
  // golden folder or real checkpoint is needed.
  const preset = JSON.parse(await Deno.readTextFile(new URL(`./presets/${o.preset}.json`, import.meta.url)));
  const taesd: Shapes = preset.taesd.shapes;
  const unet: Shapes = preset.unet_shapes;
  const midas: Shapes = preset.midas_shapes;
  const unetConfig: Record<string, unknown> = preset.unet_config;
  const unetKwargs: Record<string, unknown> = preset.unet_additional_kwargs ??
    LIVE2DIFF_DEFAULTS.unet_additional_kwargs;
  const teConfig: Record<string, unknown> = preset.text_encoder_config ?? { ...SD15_TEXT_ENCODER_CONFIG };
  const te: Shapes = preset.text_encoder_shapes ?? clipTextShapes(SD15_TEXT_ENCODER_CONFIG);
  const tokenizer: Array<[string, Uint8Array]> = [];
  for (const f of TOKENIZER_FILES) {
    tokenizer.push([f, await Deno.readFile(new URL(`./presets/tokenizer/${f}`, import.meta.url))]);
  }

  const wdt = weightDtype(o.target);
  const groups: Array<[string, Shapes, number]> = [
    ["unet", unet, seeds.unet],
    ["text_encoder", te, seeds.text_encoder],
    ["taesd", taesd, seeds.taesd],
    ["midas", midas, seeds.midas],
  ];
  const plans: TensorPlan[] = [];
  for (const [prefix, shapes] of groups) {
    for (const [k, s] of shapes) plans.push({ name: `${prefix}.${k}`, dtype: wdt, shape: s });
  }
  for (const [f, bytes] of tokenizer) plans.push({ name: `tokenizer.${f}`, dtype: "U8", shape: [bytes.byteLength] });
  const writer = await EngineWriter.create(o.out, {
    target: o.target,
    generator: `live2diff engines/synthetic.ts (preset ${o.preset})`,
    components: {
      unet: { ...unetConfig, unet_additional_kwargs: unetKwargs },
      text_encoder: teConfig,
      tokenizer: { files: Object.fromEntries(TOKENIZER_FILES.map((f) => [f, `tokenizer.${f}`])) },
      taesd: preset.taesd.config,
      midas: {
        architecture: "DPTDepthModel",
        backbone: "vitb_rn50_384",
        non_negative: true,
        ...(preset.midas_spec ? { spec: preset.midas_spec } : {}),
      },
      scheduler: { _class_name: "LCMScheduler", ...LIVE2DIFF_DEFAULTS.noise_scheduler_kwargs },
      pipeline: { vae_scale_factor: 8, warmup_frames: 8 },
      synthetic: { preset: o.preset, seeds, rule: "golden README: Philox4x32-10 weight rule" },
    },
    style: {
      clip_skip: 2,
      prompt_template: "masterpiece, best quality, intricate, print, pattern, {}",
      t_index_list: LIVE2DIFF_DEFAULTS.t_index_list,
      num_inference_steps: LIVE2DIFF_DEFAULTS.num_inference_steps,
    },
    provenance: [],
  }, plans);
  const total = plans.reduce(
    (n, p) => n + p.shape.reduce((a, b) => a * b, 1) * (p.dtype === "F32" ? 4 : p.dtype === "F16" ? 2 : 1),
    0,
  );
  const bar = new Progress(`synthetic ${o.preset}`, total, { bytes: true, quiet: o.quiet });
  try {
    using map = new TensorMap();
    for (const [prefix, shapes, seed] of groups) {
      for (const [k, shape] of shapes) {
        let t;
        if (k.endsWith("pos_encoder.pe")) t = fromFloat32(sinusoidalPe(shape), shape);
        else {
          // The Philox stream is derived from the entry name, so generate under the state-dict key itself.
          map.setPhilox(k, shape, { kind: "weight", seed });
          t = map.get(k);
          map.delete(k);
        }
        await writer.write(`${prefix}.${k}`, convertTensor(t, wdt));
        bar.set(writer.bytesWritten);
      }
    }
    for (const [f, bytes] of tokenizer) await writer.write(`tokenizer.${f}`, bytes);
    bar.finish();
    const header = await writer.finish();
    return { header, bytes: (await Deno.stat(o.out)).size, seconds: (performance.now() - started) / 1000 };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
