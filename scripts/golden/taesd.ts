/**
 * Runner of the `taesd` golden cases: diffusers AutoencoderTiny encode/decode through the native
 * "taesd" model. Everything is driven by the recorded output names:
 * - `encoded<S>`: encode of input `images` (S = "") or `image<S>` (float NCHW) / `image<S>_u8`
 *   (uint8 HWC or NHWC, mapped to u8 / 127.5 - 1 as [N,3,H,W]);
 * - `decoded<S>`: decode of input `latents<S>` when recorded, else of our own `encoded<S>`;
 * - a `_stride<k>` suffix keeps every k-th row and column of the decoded image.
 *
 * @module
 */

import type { CaseRun, CaseRunner } from "./framework.ts";
import { toFloat32 } from "../../ffi/host_tensor.ts";
import { type Context, type Model, TensorMap } from "../../ffi/native.ts";
import { createTaesdModel } from "../../ffi/loaders/taesd.ts";
import { type Images, u8ImageToNchw } from "./images.ts";

/** Every k-th row and column of an NCHW tensor. */
export function strideNchw(img: Images, k: number): Images {
  const [n, c, h, w] = img.shape as [number, number, number, number];
  const ho = Math.ceil(h / k), wo = Math.ceil(w / k);
  const out = new Float32Array(n * c * ho * wo);
  let i = 0;
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y += k) {
      for (let x = 0; x < w; x += k) out[i++] = img.values[(p * h + y) * w + x]!;
    }
  }
  return { values: out, shape: [n, c, ho, wo] };
}

async function runMethod(model: Model, method: string, input: string, output: string, x: Images): Promise<Images> {
  using io = new TensorMap();
  io.setF32(input, x.values, x.shape);
  await model.run(method, io);
  return { values: io.getF32(output).slice(), shape: io.info(output).shape };
}

async function imageInput(run: CaseRun, suffix: string): Promise<Images> {
  const floatName = suffix === "" ? "images" : `image${suffix}`;
  if (await run.hasInput(floatName)) {
    const t = await run.input(floatName);
    return { values: toFloat32(t), shape: t.shape };
  }
  const u8Name = `${floatName}_u8`;
  if (await run.hasInput(u8Name)) return u8ImageToNchw(await run.input(u8Name));
  throw new Error(`the case has no input "${floatName}" or "${u8Name}"`);
}

async function taesdCase(run: CaseRun, ctx: Context): Promise<void> {
  const vae = run.json?.model_files?.vae;
  if (typeof vae !== "string") throw new Error(`case.json has no model_files.vae`);
  using model = await createTaesdModel(ctx, run.path(vae));
  const encoded = new Map<string, Images>();
  const decoded = new Map<string, Images>();

  const encode = async (suffix: string) => {
    let r = encoded.get(suffix);
    if (!r) {
      r = await runMethod(model, "encode", "images", "latents", await imageInput(run, suffix));
      encoded.set(suffix, r);
    }
    return r;
  };
  const decode = async (suffix: string) => {
    let r = decoded.get(suffix);
    if (!r) {
      const latName = `latents${suffix}`;
      let lat: Images;
      if (await run.hasInput(latName)) {
        const t = await run.input(latName);
        lat = { values: toFloat32(t), shape: t.shape };
      } else {
        lat = await encode(suffix);
      }
      r = await runMethod(model, "decode", "latents", "images", lat);
      decoded.set(suffix, r);
    }
    return r;
  };

  const names = await run.outputNames();
  if (names.length === 0) throw new Error("the case records no outputs");
  for (const name of names) {
    const m = /^(encoded|decoded)(.*?)(?:_stride(\d+))?$/.exec(name);
    if (!m) throw new Error(`unknown taesd output "${name}"`);
    const [, kind, suffix = "", stride] = m;
    let y = kind === "encoded" ? await encode(suffix) : await decode(suffix);
    if (stride) y = strideNchw(y, Number(stride));
    const ref = await run.expected(name);
    if (ref.shape.join(",") !== y.shape.join(",")) {
      throw new Error(`output "${name}": computed shape [${y.shape}], recorded [${ref.shape}]`);
    }
    run.compare(name, y.values, ref);
  }
}

/** Runners of this module, by case kind. */
export const runners: Record<string, CaseRunner> = { taesd: taesdCase };
