/**
 * Key mapping of single-file checkpoints in the original LDM layout (what civitai DreamBooth models ship)
 * to diffusers / HF names, the mapping diffusers' `convert_from_ckpt.py` applies
 * (`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`), which is
 * what Live2Diff's `load_third_party_checkpoints` uses. The block arithmetic is derived from the model's
 * config (number of levels, layers per block, which blocks have attention), so any SD1.x-shaped UNet works.
 *
 * Only names are mapped here; data is untouched except for the VAE's mid-block attention projections,
 * stored as 1x1 convs `[C,C,1,1]` in LDM and as linears `[C,C]` in diffusers (same bytes, new shape).
 *
 * @example
 * ```ts
 * import { ldmUnetKey } from "./ldm_convert.ts";
 * const cfg = { block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2,
 *   down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
 *   up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"] };
 * console.assert(ldmUnetKey("input_blocks.4.0.in_layers.2.weight", cfg) === "down_blocks.1.resnets.0.conv1.weight");
 * ```
 *
 * @module
 */

/** Prefix of UNet keys in an LDM checkpoint. */
export const LDM_UNET_PREFIX = "model.diffusion_model.";
/** Prefix of VAE keys. */
export const LDM_VAE_PREFIX = "first_stage_model.";
/** Prefix of CLIP text-encoder keys (HF CLIPTextModel names follow). */
export const LDM_CLIP_PREFIX = "cond_stage_model.transformer.";

/** The parts of a diffusers UNet config the mapping depends on. */
export interface UnetLayoutConfig {
  block_out_channels: number[];
  layers_per_block: number;
  down_block_types: string[];
  up_block_types: string[];
}

/** The parts of a diffusers AutoencoderKL config the mapping depends on. */
export interface VaeLayoutConfig {
  block_out_channels: number[];
}

/** LDM ResBlock inner names -> diffusers ResnetBlock2D names. */
const RESNET_RENAMES: ReadonlyArray<[string, string]> = [
  ["in_layers.0.", "norm1."],
  ["in_layers.2.", "conv1."],
  ["emb_layers.1.", "time_emb_proj."],
  ["out_layers.0.", "norm2."],
  ["out_layers.3.", "conv2."],
  ["skip_connection.", "conv_shortcut."],
];

function renameResnet(rest: string): string | null {
  for (const [from, to] of RESNET_RENAMES) if (rest.startsWith(from)) return to + rest.slice(from.length);
  return null;
}

const hasAttention = (blockType: string) => blockType.includes("CrossAttn") || blockType.includes("Attn");

/**
 * Maps an LDM UNet key (without `model.diffusion_model.`) to the diffusers name, or null when the key is
 * not part of a diffusers UNet2DConditionModel (e.g. `label_emb.*` of class-conditional models).
 */
export function ldmUnetKey(key: string, config: UnetLayoutConfig): string | null {
  const levels = config.block_out_channels.length;
  const L = config.layers_per_block;
  const parts = key.split(".");
  const rest = (n: number) => parts.slice(n).join(".");
  const int = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN);
  switch (parts[0]) {
    case "time_embed": {
      const idx = { "0": "linear_1", "2": "linear_2" }[parts[1] ?? ""];
      return idx ? `time_embedding.${idx}.${rest(2)}` : null;
    }
    case "out": {
      const idx = { "0": "conv_norm_out", "2": "conv_out" }[parts[1] ?? ""];
      return idx ? `${idx}.${rest(2)}` : null;
    }
    case "input_blocks": {
      const k = int(parts[1]), m = int(parts[2]);
      if (Number.isNaN(k) || Number.isNaN(m)) return null;
      if (k === 0) return m === 0 ? `conv_in.${rest(3)}` : null;
      const level = Math.floor((k - 1) / (L + 1)), j = (k - 1) % (L + 1);
      if (level >= levels) return null;
      if (j < L) {
        if (m === 0) {
          const r = renameResnet(rest(3));
          return r ? `down_blocks.${level}.resnets.${j}.${r}` : null;
        }
        if (m === 1 && hasAttention(config.down_block_types[level] ?? "")) {
          return `down_blocks.${level}.attentions.${j}.${rest(3)}`;
        }
        return null;
      }
      // j === L: the downsampler (op) closing this level; the last level has none.
      if (m === 0 && parts[3] === "op" && level < levels - 1) {
        return `down_blocks.${level}.downsamplers.0.conv.${rest(4)}`;
      }
      return null;
    }
    case "middle_block": {
      const m = int(parts[1]);
      if (m === 0 || m === 2) {
        const r = renameResnet(rest(2));
        return r ? `mid_block.resnets.${m / 2}.${r}` : null;
      }
      return m === 1 ? `mid_block.attentions.0.${rest(2)}` : null;
    }
    case "output_blocks": {
      const k = int(parts[1]), m = int(parts[2]);
      if (Number.isNaN(k) || Number.isNaN(m)) return null;
      const level = Math.floor(k / (L + 1)), j = k % (L + 1);
      if (level >= levels) return null;
      const attn = hasAttention(config.up_block_types[level] ?? "");
      if (m === 0) {
        const r = renameResnet(rest(3));
        return r ? `up_blocks.${level}.resnets.${j}.${r}` : null;
      }
      // The upsampler sits after the resnet (m=1) or after resnet+attention (m=2) of the level's last layer.
      const upsamplerIndex = attn ? 2 : 1;
      if (m === upsamplerIndex && j === L && parts[3] === "conv" && level < levels - 1) {
        return `up_blocks.${level}.upsamplers.0.conv.${rest(4)}`;
      }
      if (m === 1 && attn) return `up_blocks.${level}.attentions.${j}.${rest(3)}`;
      return null;
    }
  }
  return null;
}

/** A VAE key mapping: the diffusers name and, for the mid attention projections, the shape to use. */
export interface VaeKeyMapping {
  name: string;
  /** Drop trailing 1x1 dims: LDM `[C,C,1,1]` conv -> diffusers `[C,C]` linear. */
  squeeze: boolean;
}

/** Maps an LDM VAE key (without `first_stage_model.`) to the diffusers AutoencoderKL name, or null. */
export function ldmVaeKey(key: string, config: VaeLayoutConfig): VaeKeyMapping | null {
  const levels = config.block_out_channels.length;
  const parts = key.split(".");
  const plain = (name: string): VaeKeyMapping => ({ name, squeeze: false });
  if (key.startsWith("quant_conv.") || key.startsWith("post_quant_conv.")) return plain(key);
  const side = parts[0];
  if (side !== "encoder" && side !== "decoder") return null;
  const tail = parts.slice(1);
  const rest = (n: number) => tail.slice(n).join(".");
  const resnet = (r: string) => r.replace(/^nin_shortcut\./, "conv_shortcut.");
  if (tail[0] === "conv_in" || tail[0] === "conv_out") return plain(`${side}.${tail.join(".")}`);
  if (tail[0] === "norm_out") return plain(`${side}.conv_norm_out.${rest(1)}`);
  if (tail[0] === "mid") {
    const m = /^block_([12])$/.exec(tail[1] ?? "");
    if (m) return plain(`${side}.mid_block.resnets.${Number(m[1]) - 1}.${resnet(rest(2))}`);
    if (tail[1] === "attn_1") {
      const names: Record<string, string> = {
        norm: "group_norm",
        q: "to_q",
        k: "to_k",
        v: "to_v",
        proj_out: "to_out.0",
      };
      const to = names[tail[2] ?? ""];
      if (!to) return null;
      return {
        name: `${side}.mid_block.attentions.0.${to}.${rest(3)}`,
        squeeze: tail[2] !== "norm" && tail[3] === "weight",
      };
    }
    return null;
  }
  const isDown = side === "encoder" && tail[0] === "down";
  const isUp = side === "decoder" && tail[0] === "up";
  if (!isDown && !isUp) return null;
  const i = Number(tail[1]);
  if (!Number.isInteger(i) || i < 0 || i >= levels) return null;
  // The LDM decoder numbers its up levels from the bottom: up.{N-1-i} is diffusers up_blocks.i.
  const block = isDown ? `${side}.down_blocks.${i}` : `${side}.up_blocks.${levels - 1 - i}`;
  if (tail[2] === "block" && /^\d+$/.test(tail[3] ?? "")) {
    return plain(`${block}.resnets.${tail[3]}.${resnet(rest(4))}`);
  }
  if (isDown && tail[2] === "downsample" && tail[3] === "conv") return plain(`${block}.downsamplers.0.conv.${rest(4)}`);
  if (isUp && tail[2] === "upsample" && tail[3] === "conv") return plain(`${block}.upsamplers.0.conv.${rest(4)}`);
  return null;
}

/** Maps an LDM CLIP key to the HF CLIPTextModel name (`cond_stage_model.transformer.` removed), or null. */
export function ldmClipKey(fullKey: string): string | null {
  return fullKey.startsWith(LDM_CLIP_PREFIX) ? fullKey.slice(LDM_CLIP_PREFIX.length) : null;
}

/** Which model a key of a single-file checkpoint belongs to, and its diffusers/HF name. */
export interface LdmKeyMapping {
  model: "unet" | "vae" | "text_encoder";
  name: string;
  squeeze: boolean;
}

/**
 * Classifies and maps one key of a single-file LDM checkpoint; null for keys the conversion does not use
 * (EMA copies `model_ema.*`, `alphas_cumprod`, `label_emb`, ...).
 */
export function mapLdmKey(fullKey: string, unet: UnetLayoutConfig, vae: VaeLayoutConfig): LdmKeyMapping | null {
  if (fullKey.startsWith(LDM_UNET_PREFIX)) {
    const name = ldmUnetKey(fullKey.slice(LDM_UNET_PREFIX.length), unet);
    return name ? { model: "unet", name, squeeze: false } : null;
  }
  if (fullKey.startsWith(LDM_VAE_PREFIX)) {
    const m = ldmVaeKey(fullKey.slice(LDM_VAE_PREFIX.length), vae);
    return m ? { model: "vae", name: m.name, squeeze: m.squeeze } : null;
  }
  const clip = ldmClipKey(fullKey);
  return clip ? { model: "text_encoder", name: clip, squeeze: false } : null;
}

/** True when the keys look like an LDM single-file checkpoint (has `model.diffusion_model.` keys). */
export function isLdmCheckpoint(names: readonly string[]): boolean {
  return names.some((n) => n.startsWith(LDM_UNET_PREFIX));
}
