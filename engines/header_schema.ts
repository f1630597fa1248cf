/**
 * Schema check of an engine header's fields outside `tensors` (those are checked against the file's
 * data area by `openEngine`). Engine files come from anyone and their checksums are recomputable, so
 * every field the loader reads is checked for type and range here, once: a bad one is a clear message
 * instead of a TypeError deep in the loader.
 *
 * @module
 */

/** Limits of the style settings (the native scheduler re-checks them against its own config). */
export const STYLE_LIMITS = {
  /** Live2Diff's clip_skip: -1 = last hidden state, else layers skipped (CLIP has a few dozen). */
  clipSkip: { min: -1, max: 64 },
  /** LCM schedules: 1..1000 steps (the training schedule's length). */
  numInferenceSteps: { min: 1, max: 1000 },
  /** One UNet batch holds every step: at most 16 (the native limit). */
  maxTIndices: 16,
} as const;

/** Returns a description of the first schema violation of `header`, or null when it is valid. */
export function headerSchemaProblem(header: Record<string, unknown>): string | null {
  if (typeof header.created !== "string") return `a "created" that is not a string`;
  if (typeof header.generator !== "string") return `a "generator" that is not a string`;
  if (typeof header.target !== "string") return `a "target" that is not a string`;
  const components = header.components;
  if (!isObject(components)) return `"components" that is not an object`;
  for (const [name, config] of Object.entries(components)) {
    if (!isObject(config)) return `a component ${JSON.stringify(name)} whose config is not an object`;
  }
  return styleProblem(header.style) ?? provenanceProblem(header.provenance);
}

/** Checks `style` ({@linkcode EngineStyle} of format.ts). */
function styleProblem(style: unknown): string | null {
  if (!isObject(style)) return `a "style" that is not an object`;
  const { clip_skip, prompt_template, t_index_list, num_inference_steps } = style;
  const { clipSkip, numInferenceSteps, maxTIndices } = STYLE_LIMITS;
  if (!isIntIn(clip_skip, clipSkip.min, clipSkip.max)) {
    return `a style.clip_skip of ${show(clip_skip)}, not an integer in ${clipSkip.min}..${clipSkip.max}`;
  }
  if (prompt_template !== null && typeof prompt_template !== "string") {
    return `a style.prompt_template of ${show(prompt_template)}, not a string or null`;
  }
  if (!isIntIn(num_inference_steps, numInferenceSteps.min, numInferenceSteps.max)) {
    return `a style.num_inference_steps of ${show(num_inference_steps)}, ` +
      `not an integer in ${numInferenceSteps.min}..${numInferenceSteps.max}`;
  }
  const steps = num_inference_steps as number;
  if (
    !Array.isArray(t_index_list) || t_index_list.length < 1 || t_index_list.length > maxTIndices ||
    !t_index_list.every((t, i) => isIntIn(t, 0, steps - 1) && (i === 0 || t > t_index_list[i - 1]))
  ) {
    return `a style.t_index_list of ${show(t_index_list)}, not 1..${maxTIndices} increasing integers in 0..${
      steps - 1
    }`;
  }
  return null;
}

/** Checks `provenance` (a list of {@linkcode ProvenanceEntry} of format.ts). */
function provenanceProblem(provenance: unknown): string | null {
  if (!Array.isArray(provenance)) return `a "provenance" that is not a list`;
  for (const [i, p] of provenance.entries()) {
    const bad = (what: string) => `a provenance[${i}] ${what}`;
    if (!isObject(p)) return bad("that is not an object");
    if (typeof p.file !== "string" || typeof p.role !== "string") return bad("without a file name and role");
    if (!isIntIn(p.bytes, 0, Number.MAX_SAFE_INTEGER)) return bad(`with a size of ${show(p.bytes)}`);
    if (typeof p.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(p.sha256)) return bad("without a sha256");
    if (p.lora_scale !== undefined && !Number.isFinite(p.lora_scale)) return bad("with a non-finite lora_scale");
    if (p.lora_convention !== undefined && typeof p.lora_convention !== "string") {
      return bad("with a lora_convention that is not a string");
    }
  }
  return null;
}

/** A tensor name that can cross the C ABI unchanged: no NUL, well-formed Unicode, a sane length. */
export function isValidTensorName(name: unknown): name is string {
  return typeof name === "string" && name.length > 0 && name.length <= 4096 && !name.includes("\0") &&
    name.isWellFormed();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isIntIn(v: unknown, min: number, max: number): v is number {
  return Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
}

/** A value quoted in a message, cut short (headers may hold anything). */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}
