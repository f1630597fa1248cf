/**
 * Runner of the `pipeline` golden cases: builds an engine file from the case's model files (style
 * YAML + base folder + motion-module checkpoint + MiDaS + TAESD), then runs and compares the whole
 * stream through the public API (see pipeline_frames.ts).
 *
 * @module
 */

import { join } from "node:path";
import { buildFromStyleConfig } from "../../engines/build.ts";
import type { CaseRunner } from "./framework.ts";
import type { EngineTarget } from "../../engines/format.ts";
import { engineForDevice, runPipelineFrames } from "./pipeline_frames.ts";

const pipeline: CaseRunner = async (run) => {
  const files = run.json.model_files;
  const dir = await Deno.makeTempDir({ prefix: "l2d_pipeline_" });
  try {
    const build = async (target: EngineTarget) => {
      const out = join(dir, `pipeline-${target}.l2de`);
      await buildFromStyleConfig(run.path(files.live2diff_config), {
        out,
        target,
        root: run.root,
        taesd: run.path(files.vae),
        depth: run.path(files.depth_model),
        motion: run.path(files.motion_module),
        quiet: true,
        log: () => {},
      });
      return out;
    };
    // cpu: the cpu build; cuda fp16: an sm_90 build (F16 weights); cuda fp32: the cpu build relabelled sm_90.
    const fp16 = run.options.device === "cuda" && run.options.precision === "fp16";
    const engine = fp16 ? await build("sm_90") : await engineForDevice(run, await build("cpu"), build);
    await runPipelineFrames(run, engine);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
};

/** Runners of this module, by case kind. */
export const runners: Record<string, CaseRunner> = { pipeline };
