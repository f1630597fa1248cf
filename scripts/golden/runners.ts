/**
 * Which module runs which kind of case. A case's kind is its case.json "case" field (the longest
 * registered prefix wins, so held-back variants such as "unet_stream_3steps" find their runner).
 * Modules are imported lazily: a kind whose runner is not written yet is reported as failed with
 * that reason instead of breaking the whole run.
 *
 * @module
 */

import type { CaseRunner } from "./framework.ts";

const MODULES: Record<string, string> = {
  unet_warmup: "./unet.ts",
  unet_stream: "./unet.ts",
  unet_full_shapes: "./unet.ts",
  taesd: "./taesd.ts",
  clip_text: "./clip_text.ts",
  midas: "./midas.ts",
  pipeline: "./pipeline.ts",
  engine_build: "./engine_build.ts",
};

/** The registered kind a case name belongs to, or undefined. */
export function kindOf(caseName: string): string | undefined {
  let best: string | undefined;
  for (const kind of Object.keys(MODULES)) {
    if (caseName.startsWith(kind) && (!best || kind.length > best.length)) best = kind;
  }
  return best;
}

/** Loads the runner of a kind; throws with a reason when it is not available. */
export async function loadRunner(kind: string): Promise<CaseRunner> {
  const path = MODULES[kind];
  if (!path) throw new Error(`no runner for case kind "${kind}"`);
  let mod: { runners?: Record<string, CaseRunner> };
  try {
    mod = await import(path);
  } catch (e) {
    throw new Error(
      `the ${kind} runner is not implemented yet (${e instanceof Error ? e.message.split("\n")[0] : e})`,
    );
  }
  const runner = mod.runners?.[kind];
  if (!runner) throw new Error(`module ${path} has no runner for "${kind}"`);
  return runner;
}
