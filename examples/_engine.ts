/**
 * Engine selection shared by the examples: a real engine file when one is configured (`--engine`
 * or `LIVE2DIFF_ENGINE`), else the default engine (tiny, RANDOM weights) with a visible notice.
 *
 * @module
 */

import { Engine } from "../mod.ts";

/** Where the engine comes from. */
export interface EngineChoice {
  /** Engine file (`.l2de`); default `$LIVE2DIFF_ENGINE`, else the default (synthetic) engine. */
  engine?: string;
  /** Backend. @default "auto" (CUDA when present) */
  device?: "cpu" | "cuda" | "auto";
}

/** Loads the configured engine, or the default one when none is configured. */
export async function loadEngine(choice: EngineChoice = {}): Promise<Engine> {
  const path = choice.engine ?? (Deno.env.get("LIVE2DIFF_ENGINE") || undefined);
  const device = choice.device ?? "auto";
  return path ? await Engine.load(path, { device }) : await Engine.loadDefault({ device });
}

/** The default stream side: small on the CPU (it is slow there), the model's native 512 on CUDA. */
export function defaultStreamSize(engine: Engine): number {
  return engine.device === "cpu" ? 64 : 512;
}

/** Parses a `--device` value. */
export function parseDevice(value: string | undefined): "cpu" | "cuda" | "auto" {
  const v = value ?? "auto";
  if (v !== "cpu" && v !== "cuda" && v !== "auto") {
    throw new RangeError(`--device must be cpu, cuda or auto, got "${v}"`);
  }
  return v;
}

/** Parses a stream side (a multiple of 64). */
export function parseSide(name: string, value: string | number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 64 || n > 4096 || n % 64 !== 0) {
    throw new RangeError(`--${name} must be a multiple of 64 in 64..4096, got "${value}"`);
  }
  return n;
}

/** Prints the random-weights notice (yellow on a terminal) when the engine is synthetic. */
export function printNotice(engine: Engine, write: (line: string) => void = (l) => console.error(l)): void {
  if (!engine.notice) return;
  const color = Deno.stderr.isTerminal() && !Deno.noColor;
  const text = `NOTICE: ${engine.notice}`;
  write(color ? `\x1b[33;1m${text}\x1b[0m` : text);
}
