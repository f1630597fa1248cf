/**
 * {@linkcode StreamOptions} and their checks. Options may come from a network client (the example
 * server passes them on), so every number is checked here as an integer in range or a finite number
 * BEFORE anything reaches the native library, whose `int()` would wrap 2^32+2 to 2 and whose parser
 * would turn a NaN into a default. Wrong types are TypeErrors, values out of range RangeErrors.
 *
 * @module
 */

/** Options of `Engine.createStream`. */
export interface StreamOptions {
  /** What the video should become (wrapped in the engine's prompt template). */
  prompt: string;
  /** Wrap prompts in the engine's style template (`"masterpiece, ..., {}"`). @default true */
  applyTemplate?: boolean;
  /** Which CLIP hidden state conditions the UNet (Live2Diff's clip_skip, -1..64). @default the engine's style */
  clipSkip?: number;
  /** Output width, a multiple of 64. @default 512 */
  width?: number;
  /** Output height, a multiple of 64. @default 512 */
  height?: number;
  /** Indices into the LCM schedule, one per denoising step (1..16, increasing). @default the engine's style */
  tIndexList?: number[];
  /** Alternative to tIndexList: how much of each frame is re-imagined (0..1], with `steps`. */
  strength?: number;
  /** Number of denoising steps with `strength` (1..16). @default 2 */
  steps?: number;
  /** LCM schedule length the indices refer to (1..1000). @default the engine's style (50) */
  numInferenceSteps?: number;
  /** Noise seed of this stream (0..2^32-1). @default 0 */
  seed?: number;
  /**
   * Skip the UNet when the input barely changed (StreamDiffusion's similar-image filter): a frame
   * whose cosine similarity to the last processed one exceeds `threshold` (0..1) is skipped with a
   * probability that grows with the similarity, at most `maxSkipFrames` (>= 0) in a row. @default off
   */
  similarImageFilter?: { threshold?: number; maxSkipFrames?: number } | false;
  /** Return the golden case's intermediates from the low-level session methods. @default false */
  debug?: boolean;
}

/** The engine's style defaults a stream falls back on. */
export interface StreamDefaults {
  t_index_list: readonly number[];
  num_inference_steps: number;
}

/** Checked options, in the form the native stream takes them. */
export interface CheckedStreamOptions {
  width: number;
  height: number;
  seed: number;
  /** Denoising steps per frame (T). */
  steps: number;
  /** Scheduler overrides: num_inference_steps and either t_index_list or strength + steps. */
  scheduler: Record<string, unknown>;
  similarImageFilter: { threshold: number; max_skip_frames: number } | null;
  applyTemplate: boolean;
  clipSkip: number | undefined;
  debug: boolean;
}

/** Limits shared with the native scheduler (`lcm_scheduler.cpp`). */
export const STREAM_LIMITS = {
  maxSide: 4096,
  maxSteps: 16,
  maxInferenceSteps: 1000,
  maxSkipFrames: 0x7fffffff,
} as const;

const WHERE = "Cannot create the stream";

/** Checks every option of `options` and fills in the defaults. */
export function checkStreamOptions(options: StreamOptions, defaults: StreamDefaults): CheckedStreamOptions {
  if (typeof options !== "object" || options === null) throw new TypeError(`${WHERE}: options must be an object`);
  if (typeof options.prompt !== "string") throw new TypeError(`${WHERE}: options.prompt must be a string`);
  const width = checkSize("width", options.width ?? 512);
  const height = checkSize("height", options.height ?? 512);
  const seed = checkInt("seed", options.seed ?? 0, 0, 0xffffffff);
  const numInferenceSteps = checkInt(
    "numInferenceSteps",
    options.numInferenceSteps ?? defaults.num_inference_steps,
    1,
    STREAM_LIMITS.maxInferenceSteps,
  );
  const scheduler: Record<string, unknown> = { num_inference_steps: numInferenceSteps };
  let steps: number;
  if (options.strength !== undefined) {
    if (typeof options.strength !== "number") throw new TypeError(`${WHERE}: strength must be a number`);
    if (!(options.strength > 0 && options.strength <= 1)) {
      throw new RangeError(`${WHERE}: strength must be in (0, 1], got ${options.strength}`);
    }
    steps = checkInt("steps", options.steps ?? 2, 1, Math.min(STREAM_LIMITS.maxSteps, numInferenceSteps));
    scheduler.strength = options.strength;
    scheduler.steps = steps;
  } else {
    const list = options.tIndexList ?? defaults.t_index_list;
    if (!Array.isArray(list)) throw new TypeError(`${WHERE}: tIndexList must be an array of integers`);
    if (list.length < 1 || list.length > STREAM_LIMITS.maxSteps) {
      throw new RangeError(`${WHERE}: tIndexList must have 1..${STREAM_LIMITS.maxSteps} entries, got ${list.length}`);
    }
    list.forEach((t, i) => {
      checkInt(`tIndexList[${i}]`, t, 0, numInferenceSteps - 1);
      if (i > 0 && t <= list[i - 1]!) throw new RangeError(`${WHERE}: tIndexList must be strictly increasing`);
    });
    scheduler.t_index_list = [...list];
    steps = list.length;
  }
  const filter = options.similarImageFilter;
  let similarImageFilter: CheckedStreamOptions["similarImageFilter"] = null;
  if (filter !== undefined && filter !== false && filter !== null) {
    if (typeof filter !== "object") {
      throw new TypeError(`${WHERE}: similarImageFilter must be an object or false`);
    }
    const threshold = filter.threshold ?? 0.98;
    if (typeof threshold !== "number") throw new TypeError(`${WHERE}: similarImageFilter.threshold must be a number`);
    if (!(threshold >= 0 && threshold <= 1)) {
      throw new RangeError(`${WHERE}: similarImageFilter.threshold must be in 0..1, got ${threshold}`);
    }
    const maxSkip = checkInt(
      "similarImageFilter.maxSkipFrames",
      filter.maxSkipFrames ?? 10,
      0,
      STREAM_LIMITS.maxSkipFrames,
    );
    similarImageFilter = { threshold, max_skip_frames: maxSkip };
  }
  return {
    width,
    height,
    seed,
    steps,
    scheduler,
    similarImageFilter,
    applyTemplate: checkBool("applyTemplate", options.applyTemplate ?? true),
    clipSkip: checkClipSkip(WHERE, options.clipSkip),
    debug: checkBool("debug", options.debug ?? false),
  };
}

/** Checks an optional clip_skip (-1 = last hidden state, else layers skipped); undefined passes through. */
export function checkClipSkip(where: string, clipSkip: unknown): number | undefined {
  if (clipSkip === undefined) return undefined;
  return checkInt("clipSkip", clipSkip, -1, 64, where);
}

function checkSize(name: string, v: unknown): number {
  const n = checkInt(name, v, 1, STREAM_LIMITS.maxSide);
  if (n % 64 !== 0) {
    throw new RangeError(`${WHERE}: ${name} ${n} must be a multiple of 64 up to ${STREAM_LIMITS.maxSide}`);
  }
  return n;
}

function checkInt(name: string, v: unknown, min: number, max: number, where = WHERE): number {
  if (typeof v !== "number") throw new TypeError(`${where}: ${name} must be an integer, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${where}: ${name} must be an integer in ${min}..${max}, got ${v}`);
  }
  return v;
}

function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw new TypeError(`${WHERE}: ${name} must be a boolean`);
  return v;
}
