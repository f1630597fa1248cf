/**
 * `deno run -A scripts/make_presets.ts [--golden-root dir]`: regenerates engines/presets/ (the names,
 * shapes and configs synthetic engines are made from, plus the tiny tokenizer) from the golden
 * vectors, so `make-synthetic-engine` and the default engine need no golden folder at run time.
 * The presets hold no weights: only shapes, configs and a 10 KB vocabulary.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openCheckpoint } from "../ffi/formats/mod.ts";
import { defaultGoldenRoot } from "./golden/framework.ts";

type Shapes = Array<[string, number[]]>;

async function fileShapes(path: string, rename: (k: string) => string | null = (k) => k): Promise<Shapes> {
  using f = await openCheckpoint(path);
  const out: Shapes = [];
  for (const n of f.names) {
    const k = rename(n);
    if (k !== null) out.push([k, f.info(n).shape]);
  }
  return out;
}

const readJson = async (p: string) => JSON.parse(await Deno.readTextFile(p));

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { "golden-root": { type: "string" } } });
  const root = values["golden-root"] ?? await defaultGoldenRoot();
  const models = join(root, "models"), cases = join(root, "cases");
  const out = fileURLToPath(new URL("../engines/presets/", import.meta.url));
  const taesd = {
    config: await readJson(join(models, "taesd", "config.json")),
    shapes: await fileShapes(join(models, "taesd", "diffusion_pytorch_model.safetensors")),
  };
  const tiny = {
    note: "names/shapes/configs of the golden tiny models (scripts/make_presets.ts); weights are Philox-generated",
    unet_config: await readJson(join(models, "tiny_sd15", "unet", "config.json")),
    unet_shapes: [
      ...await fileShapes(join(models, "tiny_sd15", "unet", "diffusion_pytorch_model.safetensors")),
      ...await fileShapes(
        join(models, "live2diff_tiny_motion_module.ckpt"),
        (k) => k.includes("grid") ? null : k.replaceAll("module.", ""),
      ),
    ],
    text_encoder_config: await readJson(join(models, "tiny_sd15", "text_encoder", "config.json")),
    text_encoder_shapes: await fileShapes(join(models, "tiny_sd15", "text_encoder", "model.safetensors")),
    midas_shapes: await fileShapes(join(models, "dpt_hybrid_reduced.pt")),
    midas_spec: await readJson(join(models, "dpt_hybrid_reduced.json")),
    taesd,
  };
  const full = await readJson(join(cases, "unet_full_shapes", "case.json"));
  const sd15 = {
    note: "names/shapes of the real SD1.5 + Live2Diff UNet and DPT-Hybrid (golden manifests); Philox weights",
    unet_config: full.unet_config_2d,
    unet_additional_kwargs: full.unet_additional_kwargs,
    unet_shapes: await readJson(join(cases, "unet_full_shapes", "unet3d_state_dict_manifest.json")),
    midas_shapes: await readJson(join(cases, "midas", "dpt_hybrid_384_state_dict_manifest.json")),
    taesd,
  };
  await Deno.writeTextFile(join(out, "tiny.json"), JSON.stringify(tiny) + "\n");
  await Deno.writeTextFile(join(out, "sd15.json"), JSON.stringify(sd15) + "\n");
  await Deno.mkdir(join(out, "tokenizer"), { recursive: true });
  for (const f of ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"]) {
    await Deno.copyFile(join(models, "tiny_sd15", "tokenizer", f), join(out, "tokenizer", f));
  }
  console.log(`wrote ${out}`);
}
