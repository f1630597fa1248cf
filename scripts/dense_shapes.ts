/**
 * The distinct convolution and linear-layer shapes of one live2diff frame, derived from the real
 * networks' weight lists (`engines/presets/sd15.json`: SD1.5 + Live2Diff UNet, TAESD, DPT-Hybrid
 * MiDaS) and the activation sizes the native models give them: UNet at 64x64 latents (512x512) in
 * the streaming call with T = 2 and T = 3 rows, TAESD at 512x512, MiDaS at 384x384.
 *
 * `deno run -A scripts/dense_shapes.ts` rewrites `cuda/tests/dense_shapes.txt`, the table that
 * `cuda/tests/test_cuda_dense.cu` runs every kernel path on; `tests/dense_shapes_test.ts` checks that the
 * committed table is this derivation and that every weight of the networks is placed.
 *
 * Table lines (whitespace separated; `#` starts a comment):
 * - `conv <tag> N C H W O KH KW stride pad_top pad_bottom pad_left pad_right bias count`
 * - `linear <tag> M K N bias count`
 *
 * `count` is how many times the shape runs per frame (all tags merged); `tag` names the first layer.
 *
 * @module
 */

/** One convolution call: x [n, c, h, w], w [o, c, kh, kw], explicit padding. */
export interface ConvShape {
  kind: "conv";
  tag: string;
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  stride: number;
  pad: [number, number, number, number];
  bias: boolean;
  count: number;
}

/** One linear call: x [m, k] @ w [n, k]^T (+ bias). */
export interface LinearShape {
  kind: "linear";
  tag: string;
  m: number;
  k: number;
  n: number;
  bias: boolean;
  count: number;
}

/** A row of the table. */
export type DenseShape = ConvShape | LinearShape;

/** `[name, shape]` pairs as stored in the presets. */
export type WeightList = [string, number[]][];

/** The preset fields this module reads. */
export interface Sd15Preset {
  unet_config: { block_out_channels: number[] };
  unet_shapes: WeightList;
  midas_shapes: WeightList;
  taesd: { shapes: WeightList };
}

const LATENT = 64; // 512x512 frames
const TAESD_SIZE = 512;
const MIDAS_SIZE = 384;
const PROMPT_TOKENS = 77;

/** TF "SAME" padding (timm pad_same), smaller half first: [before, after]. */
function samePad(size: number, k: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function conv(
  tag: string,
  n: number,
  w: number[],
  size: number,
  stride: number,
  pad: number | "same",
  bias: boolean,
  count = 1,
): ConvShape {
  const [o, c, kh, kw] = w;
  const p: [number, number, number, number] = pad === "same"
    ? [...samePad(size, kh, stride), ...samePad(size, kw, stride)]
    : [pad, pad, pad, pad];
  return { kind: "conv", tag, n, c, h: size, w: size, o, kh, kw, stride, pad: p, bias, count };
}

function linear(tag: string, m: number, w: number[], bias: boolean, count = 1): LinearShape {
  return { kind: "linear", tag, m, k: w[1], n: w[0], bias, count };
}

/** Thrown for a weight that no rule places (the table would silently miss a layer). */
export class UnplacedWeightError extends Error {
  override name = "UnplacedWeightError";
}

/** UNet (streaming call: T rows of one frame each) at 64x64 latents. */
export function unetShapes(preset: Sd15Preset, T: number): DenseShape[] {
  const names = new Set(preset.unet_shapes.map(([n]) => n));
  const levels = preset.unet_config.block_out_channels.length;
  const out: DenseShape[] = [];
  const tag = (n: string) => `unet-T${T}:${n.replace(/\.weight$/, "")}`;
  for (const [name, shape] of preset.unet_shapes) {
    if (!name.endsWith(".weight") || (shape.length !== 4 && shape.length !== 2)) continue;
    const bias = names.has(name.replace(/\.weight$/, ".bias"));
    let level: number;
    const m = /^(down|up)_blocks\.(\d+)\./.exec(name);
    if (/^(conv_in|conv_out|flow_conv_in)\./.test(name)) level = 0;
    else if (m && m[1] === "down") level = Number(m[2]);
    else if (m) level = levels - 1 - Number(m[2]);
    else if (name.startsWith("mid_block.")) level = levels - 1;
    else if (name.startsWith("time_embedding.")) {
      out.push(linear(tag(name), T, shape, bias));
      continue;
    } else throw new UnplacedWeightError(`unet weight ${name} is not placed`);
    const size = LATENT >> level;
    // The spatial transformers' 1x1 proj_in / proj_out run on tokens (layout fusion): proj_in as a
    // linear, proj_out as linear_to_image, the same GEMM with the roles swapped (its own op test,
    // test_cuda_layout, covers that form); listed here as the [T*HW, C] x [C, C] GEMM they are.
    if (shape.length === 4 && shape[2] === 1 && shape[3] === 1 && /\.attentions\.\d+\.proj_(in|out)\./.test(name)) {
      out.push(linear(tag(name), T * size * size, [shape[0], shape[1]], bias));
      continue;
    }
    if (shape.length === 4) {
      if (name.includes(".downsamplers.")) out.push(conv(tag(name), T, shape, size, 2, 1, bias));
      else if (name.includes(".upsamplers.")) out.push(conv(tag(name), T, shape, size * 2, 1, 1, bias));
      else out.push(conv(tag(name), T, shape, size, 1, shape[2] === 3 ? 1 : 0, bias));
      continue;
    }
    // Self-attention (attn1, motion modules): to_q/to_k/to_v packed at load into one [3C, C] linear.
    const selfQkv = /\.(attn1|attention_blocks\.\d+)\.to_([qkv])\./.exec(name);
    if (name.includes(".time_emb_proj.")) out.push(linear(tag(name), T, shape, bias));
    else if (selfQkv && selfQkv[2] !== "q") continue;
    else if (selfQkv) {
      out.push(linear(tag(name).replace(/\.to_q$/, ".to_qkv"), T * size * size, [3 * shape[0], shape[1]], bias));
    } else if (/\.attn2\.to_[kv]\./.test(name)) out.push(linear(tag(name), T * PROMPT_TOKENS, shape, bias));
    else if (/\.(attentions|motion_modules)\./.test(name)) out.push(linear(tag(name), T * size * size, shape, bias));
    else throw new UnplacedWeightError(`unet weight ${name} is not placed`);
  }
  return out;
}

/** TAESD at 512x512: encoder twice per frame (the frame and the depth map), decoder once. */
export function taesdShapes(preset: Sd15Preset): DenseShape[] {
  const names = new Set(preset.taesd.shapes.map(([n]) => n));
  const out: DenseShape[] = [];
  const layerOf = (n: string) => Number(/^(?:en|de)coder\.layers\.(\d+)\./.exec(n)?.[1] ?? NaN);
  // Encoder: stride-2 convs at layers 2, 6, 10 halve the size. Decoder: an upsample (x2) precedes
  // layers 6, 11, 16.
  const encSize = (l: number) => TAESD_SIZE >> [2, 6, 10].filter((s) => l > s).length;
  const decSize = (l: number) => (TAESD_SIZE / 8) << [5, 10, 15].filter((s) => l > s).length;
  for (const [name, shape] of preset.taesd.shapes) {
    if (!name.endsWith(".weight") || shape.length !== 4) continue;
    const bias = names.has(name.replace(/\.weight$/, ".bias"));
    const l = layerOf(name);
    const tag = `taesd:${name.replace(/\.weight$/, "")}`;
    if (name.startsWith("encoder.")) {
      const stride = [2, 6, 10].includes(l) ? 2 : 1;
      out.push(conv(tag, 1, shape, encSize(l), stride, shape[2] === 3 ? 1 : 0, bias, 2));
    } else if (name.startsWith("decoder.")) {
      out.push(conv(tag, 1, shape, decSize(l), 1, shape[2] === 3 ? 1 : 0, bias));
    } else throw new UnplacedWeightError(`taesd weight ${name} is not placed`);
  }
  return out;
}

/** DPT-Hybrid MiDaS at 384x384 (ResNetV2 stages [3, 4, 9] + ViT-B/16 + DPT head). */
export function midasShapes(preset: Sd15Preset): DenseShape[] {
  const names = new Set(preset.midas_shapes.map(([n]) => n));
  const out: DenseShape[] = [];
  const grid = MIDAS_SIZE / 16; // 24: ViT tokens are the stride-16 grid + the class token
  const tokens = grid * grid + 1;
  // ResNetV2 stages: input after the stem (s2) + max-pool (s2); stages 1 and 2 stride 2 in block 0.
  const stageIn = [MIDAS_SIZE / 4, MIDAS_SIZE / 4, MIDAS_SIZE / 8];
  const stageOut = [MIDAS_SIZE / 4, MIDAS_SIZE / 8, MIDAS_SIZE / 16];
  const rn = [MIDAS_SIZE / 4, MIDAS_SIZE / 8, MIDAS_SIZE / 16, MIDAS_SIZE / 32];
  for (const [name, shape] of preset.midas_shapes) {
    if (!name.endsWith(".weight") || (shape.length !== 4 && shape.length !== 2)) continue;
    const bias = names.has(name.replace(/\.weight$/, ".bias"));
    const tag = `midas:${name.replace(/\.weight$/, "")}`;
    const st = /backbone\.stages\.(\d+)\.blocks\.(\d+)\.(conv[123]|downsample\.conv)\./.exec(name);
    const ref = /^scratch\.refinenet(\d)\.(resConfUnit[12]\.conv[12]|out_conv)\./.exec(name);
    let m: RegExpExecArray | null;
    if (name === "pretrained.model.patch_embed.backbone.stem.conv.weight") {
      out.push(conv(tag, 1, shape, MIDAS_SIZE, 2, "same", bias));
    } else if (st) {
      const s = Number(st[1]), b = Number(st[2]), layer = st[3];
      // Block 0: conv1, the strided conv2 and the downsample read the stage input; conv3 (after
      // conv2) and every later block run at the stage output size.
      const atInput = b === 0 && layer !== "conv3";
      const stride = atInput && stageIn[s] !== stageOut[s] && layer !== "conv1" ? 2 : 1;
      out.push(conv(tag, 1, shape, atInput ? stageIn[s] : stageOut[s], stride, "same", bias));
    } else if (name === "pretrained.model.patch_embed.proj.weight") {
      out.push(conv(tag, 1, shape, grid, 1, 0, bias));
    } else if ((m = /^pretrained\.model\.blocks\.\d+\.attn\.qkv\./.exec(name))) {
      // timm's packed [3C, C] projection, run as it is (one QKV projection).
      out.push(linear(tag, tokens, shape, bias));
    } else if (/^pretrained\.model\.blocks\.\d+\.(attn\.proj|mlp\.fc[12])\./.test(name)) {
      out.push(linear(tag, tokens, shape, bias));
    } else if (name === "pretrained.model.head.weight") {
      continue; // the ImageNet classifier: unused
    } else if ((m = /^pretrained\.act_postprocess([34])\.0\.project\.0\./.exec(name))) {
      // ProjectReadout splits [C, 2C] into a token part (all patch tokens) and a class-token part.
      const c = shape[0];
      out.push(linear(tag + ".tokens", grid * grid, [c, c], bias), linear(tag + ".cls", 1, [c, c], false));
    } else if (name === "pretrained.act_postprocess3.3.weight" || name === "pretrained.act_postprocess4.3.weight") {
      out.push(conv(tag, 1, shape, grid, 1, 0, bias));
    } else if (name === "pretrained.act_postprocess4.4.weight") {
      out.push(conv(tag, 1, shape, grid, 2, 1, bias));
    } else if ((m = /^scratch\.layer(\d)_rn\./.exec(name))) {
      out.push(conv(tag, 1, shape, rn[Number(m[1]) - 1], 1, 1, bias));
    } else if (ref) {
      const i = Number(ref[1]) - 1;
      if (i === 3 && ref[2].startsWith("resConfUnit1")) continue; // refinenet4 has one input: unused
      const size = ref[2] === "out_conv" ? (i === 0 ? 2 * rn[0] : rn[i - 1]) : rn[i];
      out.push(conv(tag, 1, shape, size, 1, shape[2] === 3 ? 1 : 0, bias));
    } else if ((m = /^scratch\.output_conv\.([024])\./.exec(name))) {
      const size = m[1] === "0" ? 2 * rn[0] : MIDAS_SIZE;
      out.push(conv(tag, 1, shape, size, 1, shape[2] === 3 ? 1 : 0, bias));
    } else {
      throw new UnplacedWeightError(`midas weight ${name} is not placed`);
    }
  }
  return out;
}

function keyOf(s: DenseShape): string {
  return s.kind === "conv"
    ? ["conv", s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, ...s.pad, s.bias ? 1 : 0].join(" ")
    : ["linear", s.m, s.k, s.n, s.bias ? 1 : 0].join(" ");
}

/** Every network's shapes, merged by identical call (counts added, first tag kept), in first-seen order. */
export function denseShapes(preset: Sd15Preset): DenseShape[] {
  const all = [...unetShapes(preset, 2), ...unetShapes(preset, 3), ...taesdShapes(preset), ...midasShapes(preset)];
  const merged = new Map<string, DenseShape>();
  for (const s of all) {
    const k = keyOf(s);
    const prev = merged.get(k);
    if (prev) prev.count += s.count;
    else merged.set(k, { ...s });
  }
  return [...merged.values()];
}

/** The table text (see the module comment). */
export function formatTable(shapes: DenseShape[]): string {
  const lines = [
    "# Generated by scripts/dense_shapes.ts from engines/presets/sd15.json. Do not edit.",
    "# conv <tag> N C H W O KH KW stride pad_top pad_bottom pad_left pad_right bias count",
    "# linear <tag> M K N bias count",
  ];
  for (const s of shapes) {
    if (s.kind === "conv") {
      lines.push(
        [
          "conv",
          s.tag,
          s.n,
          s.c,
          s.h,
          s.w,
          s.o,
          s.kh,
          s.kw,
          s.stride,
          ...s.pad,
          s.bias ? 1 : 0,
          s.count,
        ].join(" "),
      );
    } else lines.push(["linear", s.tag, s.m, s.k, s.n, s.bias ? 1 : 0, s.count].join(" "));
  }
  return lines.join("\n") + "\n";
}

/** Where the table lives, relative to the repository root. */
export const TABLE_PATH = "cuda/tests/dense_shapes.txt";

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const preset = JSON.parse(await Deno.readTextFile(new URL("engines/presets/sd15.json", root))) as Sd15Preset;
  const shapes = denseShapes(preset);
  await Deno.writeTextFile(new URL(TABLE_PATH, root), formatTable(shapes));
  console.log(`${TABLE_PATH}: ${shapes.length} distinct shapes`);
}
