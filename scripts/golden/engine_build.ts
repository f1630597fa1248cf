/**
 * Runner of the `engine_build` golden case: builds an engine from the case's DreamBooth single-file
 * checkpoint + kohya LoRA + style config (exactly the files of case.json `engine_build.files` and
 * `model_files`), compares every recorded `fused.<model>.<key>` against the engine's tensors, then the
 * frames through the engine path.
 *
 * @module
 */

import { join } from "node:path";
import { buildFromStyleConfig } from "../../engines/build.ts";
import { type EngineTarget, openEngine } from "../../engines/format.ts";
import { toFloat32 } from "../../ffi/host_tensor.ts";
import type { CaseRun, CaseRunner } from "./framework.ts";
import { engineForDevice, runPipelineFrames } from "./pipeline_frames.ts";

/** Builds the case's engine into a temporary folder; returns its path (caller removes the folder). */
export async function buildCaseEngine(run: CaseRun, target: EngineTarget = "cpu"): Promise<string> {
  const eb = run.json.engine_build;
  const dir = await Deno.makeTempDir({ prefix: "l2d_engine_build_" });
  const out = join(dir, "engine_build.l2de");
  await buildFromStyleConfig(run.path(eb.files.config), {
    out,
    target,
    root: run.root,
    taesd: run.path(run.json.model_files.vae),
    depth: run.path(run.json.model_files.depth_model),
    motion: run.path(run.json.model_files.motion_module),
    quiet: true,
    log: () => {},
  });
  return out;
}

/** Frames through the engine path (same comparisons as the pipeline case). */
export async function compareFrames(run: CaseRun, enginePath: string): Promise<boolean> {
  await runPipelineFrames(run, enginePath);
  return true;
}

const engineBuild: CaseRunner = async (run) => {
  // The fused weights are compared on the cpu build (F32, device independent); the frames run on the
  // engine of the device (cuda fp16: an sm_90 build; cuda fp32: the cpu build relabelled sm_90).
  const path = await buildCaseEngine(run);
  const extra: string[] = [];
  try {
    {
      using engine = await openEngine(path, { target: "cpu" });
      for (const name of await run.outputNames()) {
        if (!name.startsWith("fused.")) continue;
        const key = name.slice("fused.".length); // "unet.<key>" / "text_encoder.<key>" = engine names
        if (!engine.has(key)) {
          run.compare(name, new Float32Array(0), await run.expected(name));
          continue;
        }
        run.compare(name, toFloat32(await engine.read(key)), await run.expected(name));
      }
    }
    const framesEngine = await engineForDevice(run, path, async (target: EngineTarget) => {
      const p = await buildCaseEngine(run, target);
      extra.push(p);
      return p;
    });
    await compareFrames(run, framesEngine);
  } finally {
    for (const p of [path, ...extra]) await Deno.remove(join(p, ".."), { recursive: true }).catch(() => {});
  }
};

/** Runners of this module, by case kind. */
export const runners: Record<string, CaseRunner> = { engine_build: engineBuild };
