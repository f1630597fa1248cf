/**
 * Hostile configs and stream options for the native core (issue 12, findings 1 and 11), run in a
 * child process by tests/native_hostile_test.ts so that a native crash (SIGFPE from a division by a
 * config value) fails the test instead of ending the test run.
 *
 * Run as a script it builds the golden tiny models once, tries every case in order and prints one
 * JSON line per case: `{"name", "code", "message"}` (`code` "OK" when the call succeeded). A case
 * that kills the process leaves its name as the last "start" line. `--skip=<case name>` leaves a
 * case out, `--only=<name prefix>` runs only matching cases (to replay them against an old library).
 *
 * @module
 */
import { EngineError } from "../../ffi/errors.ts";
import { cString, native, pointerSlot, slotPointer } from "../../ffi/library.ts";
import { loadMidasWeights, midasConfigFromSpec } from "../../ffi/loaders/midas.ts";
import { loadTaesd } from "../../ffi/loaders/taesd.ts";
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../../ffi/loaders/unet.ts";
import { Context, Model, NativeStream, TensorMap } from "../../ffi/native.ts";
import { goldenPath } from "./golden_root.ts";

/** What a case builds: a model from a mutated golden config, a stream, or raw JSON text. */
export type HostileTarget = "unet" | "taesd" | "clip_text" | "stream" | "raw_json" | "context" | "ops";

/** A tensor of an "ops" case: float32 or int64 values with a shape. */
export interface OpsTensor {
  f32?: number[];
  i64?: number[];
  shape: number[];
}

/** One hostile input and the typed error it must get. */
export interface HostileCase {
  /** Unique, says what is wrong. */
  name: string;
  target: HostileTarget;
  /** Dotted path of the config key to set (model and stream targets). */
  key?: string;
  /** The value put there (serialised with JSON.stringify). */
  value?: unknown;
  /** ops target: the method run on an "ops" model and its inputs. */
  method?: string;
  inputs?: Record<string, OpsTensor>;
  /** JSON text given as is (raw_json: the config of an "ops" model; context: cpu context options). */
  raw?: string;
  /** The EngineError code expected ("OK" for the controls: valid values the same way). */
  code: "OK" | "FORMAT" | "INVALID_ARGUMENT";
  /** Fragments the message must contain (the key, the reason). */
  fragments: string[];
}

const U32 = 2 ** 32;

/**
 * Every case; each hostile one failed (crash, wrap or silent acceptance) against the library before
 * the fix. The controls set valid values the same way, so a refusal is the key's, not the harness's.
 */
export const HOSTILE_CASES: readonly HostileCase[] = [
  {
    name: "control unet norm_num_groups 16",
    target: "unet",
    key: "unet.norm_num_groups",
    value: 16,
    code: "OK",
    fragments: [],
  },
  {
    name: "control taesd upsampling 2",
    target: "taesd",
    key: "upsampling_scaling_factor",
    value: 2,
    code: "OK",
    fragments: [],
  },
  { name: "control stream steps 3", target: "stream", key: "steps", value: 3, code: "OK", fragments: [] },
  {
    name: "control stream max_skip_frames 0",
    target: "stream",
    key: "similar_image_filter.max_skip_frames",
    value: 0,
    code: "OK",
    fragments: [],
  },
  {
    name: "control json numbers",
    target: "raw_json",
    raw: '{"x": [-0.5e-3, 0, 1E+2, "\\ud83d\\ude00"]}',
    code: "OK",
    fragments: [],
  },
  { name: "control context threads 1", target: "context", raw: '{"threads": 1}', code: "OK", fragments: [] },
  // Finding 1: divisors of 0 or 2^32 (int() truncation to 0) were SIGFPE in the model builder.
  {
    name: "unet norm_num_groups 0",
    target: "unet",
    key: "unet.norm_num_groups",
    value: 0,
    code: "FORMAT",
    fragments: ["norm_num_groups"],
  },
  {
    name: "unet norm_num_groups 2^32",
    target: "unet",
    key: "unet.norm_num_groups",
    value: U32,
    code: "FORMAT",
    fragments: ["norm_num_groups", "4294967296"],
  },
  {
    name: "unet attention_head_dim 0",
    target: "unet",
    key: "unet.attention_head_dim",
    value: 0,
    code: "FORMAT",
    fragments: ["attention_head_dim"],
  },
  {
    name: "unet attention_head_dim 2^32",
    target: "unet",
    key: "unet.attention_head_dim",
    value: U32,
    code: "FORMAT",
    fragments: ["attention_head_dim"],
  },
  {
    name: "unet attention_head_dim [8, 8, 0, 8]",
    target: "unet",
    key: "unet.attention_head_dim",
    value: [8, 8, 0, 8],
    code: "FORMAT",
    fragments: ["attention_head_dim"],
  },
  // Values that wrapped through int() to a valid size and were silently accepted.
  {
    name: "unet layers_per_block 2^32+2",
    target: "unet",
    key: "unet.layers_per_block",
    value: U32 + 2,
    code: "FORMAT",
    fragments: ["layers_per_block", "4294967298"],
  },
  {
    name: "unet motion heads 2^32+8",
    target: "unet",
    key: "motion.motion_module_kwargs.num_attention_heads",
    value: U32 + 8,
    code: "FORMAT",
    fragments: ["motion_module_kwargs.num_attention_heads"],
  },
  {
    name: "unet window_size 2^32+16",
    target: "unet",
    key: "motion.motion_module_kwargs.attention_kwargs.window_size",
    value: U32 + 16,
    code: "FORMAT",
    fragments: ["window_size"],
  },
  {
    name: "unet in_channels 2^32+4",
    target: "unet",
    key: "unet.in_channels",
    value: U32 + 4,
    code: "FORMAT",
    fragments: ["in_channels"],
  },
  // Types and ranges.
  {
    name: "unet norm_num_groups 16.5",
    target: "unet",
    key: "unet.norm_num_groups",
    value: 16.5,
    code: "FORMAT",
    fragments: ["norm_num_groups", "integer"],
  },
  {
    name: 'unet norm_num_groups "16"',
    target: "unet",
    key: "unet.norm_num_groups",
    value: "16",
    code: "FORMAT",
    fragments: ["norm_num_groups", "a string"],
  },
  { name: "unet norm_eps 0", target: "unet", key: "unet.norm_eps", value: 0, code: "FORMAT", fragments: ["norm_eps"] },
  {
    name: "unet mid_block_scale_factor 0 (a divisor)",
    target: "unet",
    key: "unet.mid_block_scale_factor",
    value: 0,
    code: "FORMAT",
    fragments: ["mid_block_scale_factor"],
  },
  {
    name: "unet use_motion_module 1",
    target: "unet",
    key: "motion.use_motion_module",
    value: 1,
    code: "FORMAT",
    fragments: ["use_motion_module", "true or false"],
  },
  {
    name: "unet motion_module_kwargs [] ",
    target: "unet",
    key: "motion.motion_module_kwargs",
    value: [],
    code: "FORMAT",
    fragments: ["motion_module_kwargs", "object"],
  },
  // Products that bound memory: refused with the size before anything is allocated.
  {
    name: "unet 8 levels of 16384 channels",
    target: "unet",
    key: "unet.block_out_channels",
    value: [16384, 16384, 16384, 16384],
    code: "FORMAT",
    fragments: ["GiB"],
  },
  // TAESD: 2^32+2 wrapped to 2, 2^32+4 to 4.
  {
    name: "taesd upsampling_scaling_factor 2^32+2",
    target: "taesd",
    key: "upsampling_scaling_factor",
    value: U32 + 2,
    code: "FORMAT",
    fragments: ["upsampling_scaling_factor"],
  },
  {
    name: "taesd latent_channels 2^32+4",
    target: "taesd",
    key: "latent_channels",
    value: U32 + 4,
    code: "FORMAT",
    fragments: ["latent_channels", "4294967300"],
  },
  {
    name: "clip_text layer_norm_eps -1",
    target: "clip_text",
    key: "layer_norm_eps",
    value: -1,
    code: "FORMAT",
    fragments: ["layer_norm_eps"],
  },
  // JSON numbers outside the grammar: strtod read them as NaN, Infinity or hex.
  { name: "json -nan", target: "raw_json", raw: '{"x": -nan}', code: "FORMAT", fragments: ["invalid JSON"] },
  { name: "json 1e999", target: "raw_json", raw: '{"x": 1e999}', code: "FORMAT", fragments: ["out of range"] },
  { name: "json hex", target: "raw_json", raw: '{"x": 0x10}', code: "FORMAT", fragments: ["invalid JSON"] },
  { name: "json -infinity", target: "raw_json", raw: '{"x": -infinity}', code: "FORMAT", fragments: ["invalid JSON"] },
  {
    name: "json lone surrogate",
    target: "raw_json",
    raw: '{"x": "\\ud800"}',
    code: "FORMAT",
    fragments: ["surrogate"],
  },
  {
    name: "context threads 1e999",
    target: "context",
    raw: '{"threads": 1e999}',
    code: "FORMAT",
    fragments: ["out of range"],
  },
  // Finding 11: stream options.
  {
    name: "stream steps 2^32+2",
    target: "stream",
    key: "steps",
    value: U32 + 2,
    code: "INVALID_ARGUMENT",
    fragments: ["steps", "4294967298"],
  },
  {
    name: "stream num_inference_steps 2^32+50",
    target: "stream",
    key: "num_inference_steps",
    value: U32 + 50,
    code: "INVALID_ARGUMENT",
    fragments: ["num_inference_steps"],
  },
  {
    name: "stream max_skip_frames -1",
    target: "stream",
    key: "similar_image_filter.max_skip_frames",
    value: -1,
    code: "INVALID_ARGUMENT",
    fragments: ["max_skip_frames"],
  },
  {
    name: "stream max_skip_frames 2^32+1",
    target: "stream",
    key: "similar_image_filter.max_skip_frames",
    value: U32 + 1,
    code: "INVALID_ARGUMENT",
    fragments: ["max_skip_frames"],
  },
  {
    name: "stream threshold true",
    target: "stream",
    key: "similar_image_filter.threshold",
    value: true,
    code: "INVALID_ARGUMENT",
    fragments: ["threshold"],
  },
  {
    name: "stream seed 2^32+5",
    target: "stream",
    key: "seed",
    value: U32 + 5,
    code: "INVALID_ARGUMENT",
    fragments: ["seed"],
  },
  { name: "stream seed -1", target: "stream", key: "seed", value: -1, code: "INVALID_ARGUMENT", fragments: ["seed"] },
  {
    name: "stream width 2^32+64",
    target: "stream",
    key: "width",
    value: U32 + 64,
    code: "INVALID_ARGUMENT",
    fragments: ["width"],
  },
  {
    name: 'stream debug "yes"',
    target: "stream",
    key: "debug",
    value: "yes",
    code: "INVALID_ARGUMENT",
    fragments: ["debug"],
  },
  // The "ops" model passes raw parameters to backend ops: a divisor of 0 was SIGFPE, a short
  // parameter vector an out-of-bounds read.
  {
    name: "ops group_norm 0 groups",
    target: "ops",
    method: "group_norm",
    inputs: {
      x: { f32: Array(16).fill(1), shape: [1, 4, 2, 2] },
      gamma: { f32: [1, 1, 1, 1], shape: [4] },
      beta: { f32: [0, 0, 0, 0], shape: [4] },
      params: { f32: [0, 1e-5, 0], shape: [3] },
    },
    code: "INVALID_ARGUMENT",
    fragments: ["groups"],
  },
  {
    name: "ops attention 0 heads",
    target: "ops",
    method: "attention",
    inputs: {
      q: { f32: Array(8).fill(1), shape: [1, 2, 4] },
      k: { f32: Array(8).fill(1), shape: [1, 2, 4] },
      v: { f32: Array(8).fill(1), shape: [1, 2, 4] },
      params: { i64: [0, 0], shape: [2] },
    },
    code: "INVALID_ARGUMENT",
    fragments: ["heads"],
  },
  {
    name: "ops self_attention 0 heads",
    target: "ops",
    method: "self_attention",
    inputs: { qkv: { f32: Array(24).fill(1), shape: [1, 2, 12] }, params: { i64: [0, 0], shape: [2] } },
    code: "INVALID_ARGUMENT",
    fragments: ["heads"],
  },
  {
    name: "ops stream_temporal_attention_qkv qkv not 3C",
    target: "ops",
    method: "stream_temporal_attention_qkv",
    inputs: {
      qkv: { f32: Array(8).fill(1), shape: [1, 2, 4] },
      cache: { f32: Array(2 * 2 * 16 * 4).fill(0), shape: [1, 2, 2, 16, 4] },
      heads: { i64: [1], shape: [1] },
    },
    code: "INVALID_ARGUMENT",
    fragments: ["3C"],
  },
  {
    name: "ops conv2d stride 0",
    target: "ops",
    method: "conv2d",
    inputs: {
      x: { f32: Array(16).fill(1), shape: [1, 1, 4, 4] },
      w: { f32: Array(9).fill(1), shape: [1, 1, 3, 3] },
      params: { i64: [0, 1, 1, 1, 1, 1], shape: [6] },
    },
    code: "INVALID_ARGUMENT",
    fragments: ["stride"],
  },
  {
    name: "ops slice params []",
    target: "ops",
    method: "slice",
    inputs: { x: { f32: [1, 2, 3], shape: [3] }, params: { i64: [], shape: [0] } },
    code: "INVALID_ARGUMENT",
    fragments: ["params", "4 values"],
  },
  {
    name: "control ops group_norm 2 groups",
    target: "ops",
    method: "group_norm",
    inputs: {
      x: { f32: Array(16).fill(1), shape: [1, 4, 2, 2] },
      gamma: { f32: [1, 1, 1, 1], shape: [4] },
      beta: { f32: [0, 0, 0, 0], shape: [4] },
      params: { f32: [2, 1e-5, 0], shape: [3] },
    },
    code: "OK",
    fragments: [],
  },
];

/** A deep copy of `obj` with the dotted `path` set to `value` (objects created on the way). */
export function withKey(obj: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const out = structuredClone(obj);
  const parts = path.split(".");
  let at: Record<string, unknown> = out;
  for (const p of parts.slice(0, -1)) {
    if (typeof at[p] !== "object" || at[p] === null) at[p] = {};
    at = at[p] as Record<string, unknown>;
  }
  at[parts[parts.length - 1]!] = value;
  return out;
}

function outcome(e: unknown): { code: string; message: string } {
  if (e instanceof EngineError) return { code: e.code, message: e.message };
  return { code: "NOT_ENGINE_ERROR", message: String(e) };
}

/**
 * Runs every case not named in `skip` (`--skip=<name>`) and, when `only` is not empty, starting
 * with one of its prefixes (`--only=<prefix>`): to replay cases one by one against an old library.
 */
async function runAll(skip: Set<string>, only: string[]): Promise<void> {
  using ctx = Context.create("cpu", { threads: 1 });
  const unetDir = goldenPath("models/tiny_sd15/unet");
  const warmup = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
  const unetConfig = unetModelConfig(await readUnetConfig(unetDir), warmup.unet_additional_kwargs) as unknown as Record<
    string,
    unknown
  >;
  using unetWeights = new TensorMap();
  await loadUnetWeights(unetWeights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
  using taesd = await loadTaesd(goldenPath("models/taesd"));
  const clipConfig = JSON.parse(await Deno.readTextFile(goldenPath("models/tiny_sd15/text_encoder/config.json")));

  // The stream's models (valid), built once.
  using unet = await Model.create(ctx, "unet", unetConfig, unetWeights);
  using vae = await Model.create(ctx, "taesd", taesd.config, taesd.weights);
  using midasWeights = new TensorMap();
  await loadMidasWeights(midasWeights, goldenPath("models/dpt_hybrid_reduced.pt"));
  const reduced = JSON.parse(await Deno.readTextFile(goldenPath("models/dpt_hybrid_reduced.json")));
  using depth = await Model.create(ctx, "midas", midasConfigFromSpec(reduced.spec ?? {}), midasWeights);
  // No t_index_list: "steps" (with the default strength) picks the denoising steps.
  const streamConfig = { width: 64, height: 64, seed: 1, similar_image_filter: {} };

  for (const c of HOSTILE_CASES) {
    if (skip.has(c.name) || (only.length > 0 && !only.some((p) => c.name.startsWith(p)))) continue;
    console.log(JSON.stringify({ start: c.name }));
    let result = { code: "OK", message: "" };
    try {
      if (c.target === "unet") {
        (await Model.create(ctx, "unet", withKey(unetConfig, c.key!, c.value), unetWeights)).close();
      } else if (c.target === "taesd") {
        (await Model.create(ctx, "taesd", withKey(taesd.config, c.key!, c.value), taesd.weights)).close();
      } else if (c.target === "clip_text") {
        (await Model.create(ctx, "clip_text", withKey(clipConfig, c.key!, c.value))).close();
      } else if (c.target === "ops") {
        using ops = await Model.create(ctx, "ops", {});
        using io = new TensorMap();
        for (const [name, t] of Object.entries(c.inputs ?? {})) {
          if (t.i64) io.setI64(name, t.i64, t.shape);
          else io.setF32(name, Float32Array.from(t.f32 ?? []), t.shape);
        }
        await ops.run(c.method!, io);
      } else if (c.target === "stream") {
        const config = withKey(streamConfig, c.key!, c.value) as typeof streamConfig;
        NativeStream.create(unet, vae, depth, config).close();
      } else {
        result = await rawCall(ctx, c);
      }
    } catch (e) {
      result = outcome(e);
    }
    console.log(JSON.stringify({ name: c.name, ...result }));
  }
}

// JSON text the TS layer could never produce (JSON.stringify writes no NaN, hex or lone surrogate
// escapes), given straight to the C ABI.
async function rawCall(ctx: Context, c: HostileCase): Promise<{ code: string; message: string }> {
  const lib = native();
  const slot = pointerSlot();
  const codes = [
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "FORMAT",
    "UNSUPPORTED",
    "OUT_OF_MEMORY",
    "BACKEND",
    "INTERNAL",
  ];
  let status: number;
  if (c.target === "context") {
    status = lib.l2d_context_create(cString("cpu"), cString(c.raw!), slot);
    if (status === 0) lib.l2d_context_free(slotPointer(slot));
  } else {
    const ctxPtr = ctx.rawHandle();
    status = await lib.l2d_model_create(ctxPtr, cString("ops"), cString(c.raw!), null, slot);
    if (status === 0) lib.l2d_model_free(slotPointer(slot));
  }
  // The model call ran on a worker thread: its message is in the context handle.
  const ptr = c.target === "context" ? lib.l2d_last_error() : lib.l2d_context_last_error(ctx.rawHandle());
  const message = ptr === null ? "" : Deno.UnsafePointerView.getCString(ptr);
  return { code: codes[status] ?? `STATUS_${status}`, message };
}

if (import.meta.main) {
  const values = (flag: string) => Deno.args.filter((a) => a.startsWith(flag)).map((a) => a.slice(flag.length));
  await runAll(new Set(values("--skip=")), values("--only="));
}
