/**
 * `deno task build-engine` — builds a live2diff engine file (seconds, once; any resolution and step count).
 *
 * ```
 * deno task build-engine --config configs/disneyPixar.yaml --taesd models/taesd --target sm_89 --out engines/disney.l2de
 * deno task build-engine --base models/stable-diffusion-v1-5 --motion models/live2diff.ckpt \
 *   --depth models/dpt_hybrid_384.pt --taesd models/taesd --lora models/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors:1:diffusers \
 *   --target cpu --out engines/sd15.l2de
 * ```
 * Options: `--config style.yaml` (Live2Diff style config; `--root` = where its relative paths start),
 * `--base <sd15 folder>`, `--dreambooth <single file>` (or `--base <single file>`), `--motion`, `--depth`,
 * `--taesd`, `--tokenizer`, `--lora path[:scale[:live2diff|kohya|diffusers]]` (repeatable), `--lcm-lora path`
 * (fused with the diffusers convention, scale 1), `--lora-convention live2diff|kohya` (default of --lora and of
 * the config's lora_list; live2diff = fidelity to the original), `--clip-skip`, `--prompt-template`,
 * `--t-index-list 30,36,42`, `--steps 50`, `--target cpu|sm_XY`, `--out`, `--quiet`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildEngine, type BuildEngineOptions, buildFromStyleConfig } from "../engines/build.ts";
import { parseTarget } from "../engines/format.ts";
import { type LoraConvention, parseLoraArg } from "../engines/lora.ts";

const USAGE = `usage: deno task build-engine (--config style.yaml | --base <sd15 folder|single file>) \\
  [--motion live2diff.ckpt] [--depth dpt_hybrid_384.pt] --taesd <folder> [--lora path[:scale[:convention]]]... \\
  [--lcm-lora path] [--lora-convention live2diff|kohya] --target cpu|sm_89|sm_90|... --out engine.l2de`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      config: { type: "string" },
      root: { type: "string" },
      base: { type: "string" },
      dreambooth: { type: "string" },
      motion: { type: "string" },
      depth: { type: "string" },
      taesd: { type: "string" },
      tokenizer: { type: "string" },
      lora: { type: "string", multiple: true, default: [] },
      "lcm-lora": { type: "string" },
      "lora-convention": { type: "string", default: "live2diff" },
      "clip-skip": { type: "string" },
      "prompt-template": { type: "string" },
      "t-index-list": { type: "string" },
      steps: { type: "string" },
      target: { type: "string", default: "cpu" },
      out: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || !values.out || (!values.config && !values.base)) {
    console.error(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  try {
    const convention = values["lora-convention"] as LoraConvention;
    if (convention !== "live2diff" && convention !== "kohya") {
      throw new TypeError(`--lora-convention must be live2diff or kohya, got "${convention}"`);
    }
    const loras = values.lora.map((a) => parseLoraArg(a, convention));
    if (values["lcm-lora"]) loras.push({ path: values["lcm-lora"], scale: 1, convention: "diffusers" });
    const style: BuildEngineOptions["style"] = {};
    if (values["clip-skip"]) style.clip_skip = Number(values["clip-skip"]);
    if (values["prompt-template"]) style.prompt_template = values["prompt-template"];
    if (values["t-index-list"]) style.t_index_list = values["t-index-list"].split(",").map(Number);
    if (values.steps) style.num_inference_steps = Number(values.steps);
    // --base may name a single file: then it is the DreamBooth-style checkpoint with no folder underneath.
    let base = values.base, dreambooth = values.dreambooth;
    if (base && (await Deno.stat(base)).isFile) [base, dreambooth] = [undefined, base];
    const target = parseTarget(values.target);
    const common = {
      out: values.out,
      target,
      motion: values.motion,
      depth: values.depth,
      taesd: values.taesd,
      tokenizer: values.tokenizer,
      quiet: values.quiet,
    };
    const defined = Object.fromEntries(Object.entries(common).filter(([, v]) => v !== undefined));
    const report = values.config
      ? await buildFromStyleConfig(values.config, {
        ...defined,
        out: values.out,
        target,
        root: values.root,
        loras,
        ...(base ? { base } : {}),
        ...(dreambooth ? { dreambooth } : {}),
        ...(Object.keys(style).length ? { style } : {}),
      })
      : await (() => {
        for (const k of ["motion", "depth", "taesd"] as const) {
          if (!common[k]) throw new TypeError(`--${k} is required`);
        }
        return buildEngine({ ...common, base, dreambooth, loras, style } as BuildEngineOptions);
      })();
    console.log(JSON.stringify({
      engine: report.path,
      bytes: report.bytes,
      tensors: report.header.tensors.length,
      target: report.header.target,
      lora_pairs: report.loraPairs,
      seconds: Math.round(report.seconds * 100) / 100,
      warnings: report.warnings,
    }));
  } catch (e) {
    console.error(`build-engine: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
