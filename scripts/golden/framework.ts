/**
 * The golden-case harness: loads a case directory (case.json + safetensors), hands it to the
 * runner of its kind, and judges every output tensor against the recorded reference with the
 * case's own tolerances. Runners live next to this file, one per kind of case.
 *
 * Judging rules (golden README "Tolerances" and the CUDA issue's acceptance numbers):
 * - cpu: max |y - ref| <= advised_max_abs[name];
 * - cuda fp32: max |y - ref| <= 4 x advised_max_abs[name];
 * - cuda fp16: ||y - ref|| / ||ref|| <= 1e-2 (2e-2 for the frames of pipeline/engine_build);
 * - integer tensors and attention biases: exact; uint8 frames: off by at most 1.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type CheckpointFile, openSafetensors } from "../../ffi/formats/mod.ts";
import { type HostTensor, toFloat32 } from "../../ffi/host_tensor.ts";
import type { Context } from "../../ffi/native.ts";

/**
 * The golden root used when none is given: `L2D_GOLDEN_DIR`, else the repository's public set
 * (unpacked into the cache on first use; scripts/golden/root.ts).
 */
export { goldenRoot as defaultGoldenRoot } from "./root.ts";

/** Options every runner sees. */
export interface RunOptions {
  device: "cpu" | "cuda";
  precision: "fp32" | "fp16";
}

/** Verdict on one output tensor. */
export interface TensorResult {
  name: string;
  maxAbs: number;
  relL2: number;
  /** The bound applied (max-abs bound, or relative-L2 bound in fp16 mode). */
  bound: number;
  metric: "max_abs" | "rel_l2" | "exact" | "u8";
  pass: boolean;
}

/** A case being run: its files, its json, and the results so far. */
export class CaseRun implements Disposable {
  readonly results: TensorResult[] = [];
  #files = new Map<string, CheckpointFile>();

  constructor(
    /** The case directory. */
    readonly dir: string,
    /** case.json, parsed. */
    // deno-lint-ignore no-explicit-any
    readonly json: any,
    readonly options: RunOptions,
  ) {}

  /** The golden root: two levels above the case directory (README "Layout"). */
  get root(): string {
    return resolve(this.dir, "..", "..");
  }

  /** Resolves a path of case.json (text before the first space) against the golden root. */
  path(value: string): string {
    return join(this.root, value.split(" ")[0]!);
  }

  async #file(name: string): Promise<CheckpointFile> {
    let f = this.#files.get(name);
    if (!f) {
      f = await openSafetensors(join(this.dir, name));
      this.#files.set(name, f);
    }
    return f;
  }

  /** A tensor of inputs.safetensors. */
  async input(name: string): Promise<HostTensor> {
    return (await this.#file("inputs.safetensors")).read(name);
  }

  /** Whether inputs.safetensors has `name`. */
  async hasInput(name: string): Promise<boolean> {
    return (await this.#file("inputs.safetensors")).has(name);
  }

  /** A tensor of outputs.safetensors, or of outputs_f16.safetensors when not found there. */
  async expected(name: string): Promise<HostTensor> {
    const main = await this.#file("outputs.safetensors");
    if (main.has(name)) return main.read(name);
    const f16 = await this.#file("outputs_f16.safetensors");
    return f16.read(name);
  }

  /** Names of every recorded output (both output files). */
  async outputNames(): Promise<string[]> {
    const names = [...(await this.#file("outputs.safetensors")).names];
    try {
      names.push(...(await this.#file("outputs_f16.safetensors")).names);
    } catch {
      // only some cases have F16 outputs
    }
    return names;
  }

  /** The advised max-abs bound of an output, or `fallback` when case.json has none. */
  advised(name: string, fallback?: number): number {
    const table = this.json?.tolerance?.advised_max_abs ?? {};
    const v = table[name];
    if (typeof v === "number") return v;
    if (fallback !== undefined) return fallback;
    throw new Error(`Case "${this.json?.case}" has no advised tolerance for "${name}"`);
  }

  /** Relative-L2 bound of fp16 mode for this case's float outputs. */
  get fp16Bound(): number {
    const kind = String(this.json?.case ?? "");
    return kind.startsWith("pipeline") || kind.startsWith("engine_build") ? 2e-2 : 1e-2;
  }

  /** Judges float values against a reference (recorded name `refName`, reported as `name`). */
  compare(
    name: string,
    actual: ArrayLike<number>,
    reference: HostTensor | Float32Array,
    bound?: number,
  ): TensorResult {
    const ref = reference instanceof Float32Array ? reference : toFloat32(reference);
    if (actual.length !== ref.length) {
      return this.#push({
        name,
        maxAbs: Infinity,
        relL2: Infinity,
        bound: 0,
        metric: "max_abs",
        pass: false,
      });
    }
    let maxAbs = 0, diff2 = 0, ref2 = 0;
    for (let i = 0; i < ref.length; i++) {
      const a = actual[i]!, r = ref[i]!;
      if (a === r) {
        if (Number.isFinite(r)) ref2 += r * r;
        continue; // equal infinities count as exact
      }
      const d = Math.abs(a - r);
      maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
      diff2 += d * d;
      ref2 += r * r;
    }
    const relL2 = ref2 > 0 ? Math.sqrt(diff2 / ref2) : (diff2 > 0 ? Infinity : 0);
    if (this.options.device === "cuda" && this.options.precision === "fp16") {
      const b = this.fp16Bound;
      return this.#push({ name, maxAbs, relL2, bound: b, metric: "rel_l2", pass: relL2 <= b });
    }
    const advised = bound ?? this.advised(name);
    const b = this.options.device === "cuda" ? 4 * advised : advised;
    return this.#push({ name, maxAbs, relL2, bound: b, metric: "max_abs", pass: maxAbs <= b });
  }

  /** Judges integer (or 0/-inf) values: they must match exactly. */
  compareExact(
    name: string,
    actual: ArrayLike<number>,
    reference: HostTensor | ArrayLike<number>,
  ): TensorResult {
    const ref = "dtype" in reference ? toFloat32(reference as HostTensor) : reference;
    let maxAbs = actual.length === ref.length ? 0 : Infinity;
    for (let i = 0; i < Math.min(actual.length, ref.length); i++) {
      if (actual[i] !== ref[i]) maxAbs = Math.max(maxAbs, Math.abs(actual[i]! - ref[i]!) || Infinity);
    }
    return this.#push({
      name,
      maxAbs,
      relL2: maxAbs === 0 ? 0 : NaN,
      bound: 0,
      metric: "exact",
      pass: maxAbs === 0,
    });
  }

  /** Judges uint8 frames: every value within 1 of the reference. */
  compareU8(name: string, actual: ArrayLike<number>, reference: HostTensor): TensorResult {
    const ref = toFloat32(reference);
    let maxAbs = actual.length === ref.length ? 0 : Infinity;
    for (let i = 0; i < Math.min(actual.length, ref.length); i++) {
      maxAbs = Math.max(maxAbs, Math.abs(actual[i]! - ref[i]!));
    }
    if (this.options.device === "cuda" && this.options.precision === "fp16") {
      // fp16 is judged on the float frames (relative L2); the rounded bytes get the same relative bound.
      return this.compare(name, Float32Array.from(actual), ref);
    }
    return this.#push({ name, maxAbs, relL2: NaN, bound: 1, metric: "u8", pass: maxAbs <= 1 });
  }

  #push(r: TensorResult): TensorResult {
    this.results.push(r);
    return r;
  }

  [Symbol.dispose](): void {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
  }
}

/** A runner executes one kind of case through the public API and calls `run.compare*`. */
export type CaseRunner = (run: CaseRun, ctx: Context) => Promise<void>;

/** Reads case.json of a case directory. */
export async function readCaseJson(dir: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(join(dir, "case.json")));
}

/** Directory of this module (for runners that need sibling files). */
export const HERE = dirname(fileURLToPath(import.meta.url));
