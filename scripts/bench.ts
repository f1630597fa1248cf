/**
 * `deno task bench [--device cpu|cuda] [--engine path] [--frames n] [--sizes 512x512,768x512] [--steps 2,3]`
 * `[--precision fp16|fp32] [--warmup n] [--stage-iters n] [--no-stages] [--max-seconds s] [--budget s]`
 * `[--kernels auto|simple|own|vendor|tune] [--no-layers] [--profile-frames n] [--concurrency 2,4] [--quick]`
 * `deno run -A scripts/bench.ts --compare before.json after.json` (ratios of two runs: scripts/bench/compare.ts)
 *
 * A benchmark (not a test) of the live stream through the public API. For each configuration (stream
 * size x denoising steps) it creates a stream, warms it up (the 8 sink frames, the T-1 latency frames and
 * a few more), then pushes `--frames` frames and reports:
 * - end-to-end FPS and p50/p99 latency of `stream.push` (public API: validation, the nonblocking FFI
 *   call, the output copy). FPS = pushes / time spent in the timed public pushes (sequential pushes);
 * - native p50: the same `l2d_stream_push` on the same stream, called through a second, BLOCKING
 *   binding of the symbol, so the time around it is the native work plus a plain FFI call. Public and
 *   native calls alternate frame by frame (same stream state); `ffi_overhead_ms` = public p50 - native p50
 *   is what TypeScript + the nonblocking hand-off cost per frame;
 * - memory: the backend's bytes in use with the stream open, its peak so far (`engine.stats()`, cumulative
 *   over the run: configurations run in the order given) and the process RSS (`Deno.memoryUsage().rss`).
 *
 * From the context's counters (`l2d_context_stats`; scripts/bench/frame_counters.ts), per timed push:
 * - `launches_per_frame`: CUDA kernel launches, vendor (cuBLASLt/cuDNN) calls, CUDA-graph launches and
 *   their kernel nodes; on the CPU `cpu_loops_stand_in` counts thread-pool loops instead (no kernels);
 *   `copies` (memcpy/memset calls, apart from the launches) and `graph_copies` (copy nodes in graphs);
 * - `push_ms`: wall time inside `l2d_stream_push`, the time it blocked waiting for the device, and
 *   `host_ms` = the difference (the host's own cost per frame), plus the thread's CPU time.
 * Then `--profile-frames` more pushes (default 10; 0: none) run with stage profiling on
 * (`engine.profileStages`): `stage_ms_per_frame` = milliseconds per frame of "depth" (MiDaS and the
 * depth image), "encode" (one TAESD pass over the frame and its depth image, + noise), "unet" (the UNet
 * batch + LCM step) and "decode", measured INSIDE the push (CUDA: events on the device; CPU: wall clock). With CUDA graphs
 * replaying, no host code marks the stages, so they are absent then.
 * Concurrency (`--concurrency 2,4`, "" for none): N streams on the one engine pushed from parallel async
 * calls at the first configuration's size and steps; `concurrent[]` has the aggregate FPS
 * (scripts/bench/concurrent.ts).
 *
 * Separate per-stage calls: the native pipeline has no internal timers, so after the stream runs the engine
 * is closed and its networks are loaded again, alone, from the same engine file; each stage is then timed
 * as a SEPARATE call at the same sizes (median of `--stage-iters`): MiDaS `depth` on [1,3,384,384] (the
 * stream resizes frames to 384 for MiDaS), TAESD `encode` [1,3,H,W] (done twice per frame: the frame and
 * the depth map), UNet session `stream` with T steps ([T,4,1,H/8,W/8] after a warm-up), TAESD `decode`
 * [1,4,H/8,W/8]. These timings include the tensor-map copies (host -> backend inputs, backend -> host
 * outputs) that the fused stream does not make, and exclude its frame resize / colour conversion; their
 * sum is an estimate, not a breakdown of the push time.
 *
 * Dense kernels (CUDA): `--kernels simple|own|vendor|tune|auto` sets `L2D_KERNELS` for every context of the
 * run (which implementation runs convolutions and matrix products; see cuda/src/backends/cuda/dense_router.h).
 * The summary's `kernels` says which mode ran and which vendor libraries loaded (or why not); every
 * configuration gets `dense_per_frame`: the dense calls per pushed frame by path (from the backend's
 * counters). Unless `--no-layers`, a third pass loads the networks once more in a context with
 * `L2D_PROFILE_DENSE=1` (CUDA events around every dense op, so its stage times are not reported) and
 * reports per layer class (conv3x3/<output size>, conv1x1/<size>, linear, matmul, ...) and stage the
 * milliseconds per call, GFLOP, achieved TFLOP/s and the path that ran (`layers`). Attention, norms
 * and elementwise ops are not instrumented: per stage, `other_ms` = the stage's unprofiled median
 * minus its dense milliseconds is their time (when the stage timings ran).
 *
 * The human table goes to stderr; the LAST stdout line is one JSON object (device, configs with fps,
 * p50/p99, native p50, overhead, stage ms, memory, kernels, layers, concurrent). Before the concurrency
 * part a first line with the single-stream results (`"partial"`) is printed, so a crash there (several
 * streams on one context: the least tested path) still leaves them as the last line.
 *
 * Defaults: CPU: the tiny synthetic default engine (`Engine.loadDefault`), sizes 64x64,128x128, steps
 * 2,3. CUDA: `models/engines/synthetic-sd15-sm_90.l2de` (made like `deno task make-synthetic-engine
 * --preset sd15 --target sm_90` when missing), configurations 512x512 x {2,3} steps and 768x512 x 2.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname } from "node:path";
import { Engine } from "../ffi/engine.ts";
import { type Stream, WARMUP_FRAMES } from "../ffi/stream.ts";
import { backendAvailable, Context, Model, TensorMap } from "../ffi/native.ts";
import { libraryCandidates, native, readCString } from "../ffi/library.ts";
import { symbols } from "../ffi/symbols.ts";
import { DPT_HYBRID_384_CONFIG, midasConfigFromSpec } from "../ffi/loaders/midas.ts";
import { openEngine } from "../engines/format.ts";
import type { ContextStats } from "../ffi/native.ts";
import {
  hasFrameCounters,
  type LaunchesPerFrame,
  launchesPerFrame,
  type PushTimes,
  pushTimes,
  stageMsPerFrame,
} from "./bench/frame_counters.ts";
import { concurrentBench, type ConcurrentResult } from "./bench/concurrent.ts";
import { compareMain } from "./bench/compare.ts";

/** One stream configuration. */
export interface BenchConfig {
  width: number;
  height: number;
  steps: number;
}

/** Result of one configuration (JSON field names). */
export interface BenchResult extends BenchConfig {
  frames: number;
  fps: number;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  /** Seconds spent in the timed public pushes: fps = frames / timed_seconds. */
  timed_seconds: number;
  native_frames: number;
  native_p50_ms: number;
  ffi_overhead_ms: number;
  stages_ms?: StageTimes;
  backend_in_use_bytes: number;
  /** Bytes captured CUDA graphs hold between replays (not in `backend_in_use_bytes`, in the peak). */
  backend_graph_reserved_bytes: number;
  backend_peak_bytes: number;
  rss_bytes: number;
  /** Dense (conv / matmul) calls per pushed frame by kernel path (CUDA). */
  dense_per_frame?: Record<string, number>;
  /** Launches per timed push (public and native), from the context's counters. */
  launches_per_frame?: LaunchesPerFrame | null;
  /** Host / device-wait milliseconds per timed push. */
  push_ms?: PushTimes | null;
  /** Milliseconds per frame of each stage inside the push, over `profiled_frames` pushes. */
  stage_ms_per_frame?: Record<string, number> | null;
  profiled_frames?: number;
  stopped_early?: boolean;
}

/** Per-stage medians of separate calls (see the module doc). */
export interface StageTimes {
  depth_midas_384: number;
  encode: number;
  unet: number;
  decode: number;
  /** depth + 2 x encode + unet + decode. */
  sum_per_frame: number;
}

/** Counters of one layer class and path (`l2d_context_stats` -> `kernels.ops`). */
export interface KernelCounter {
  calls: number;
  gflop: number;
  /** Present when the context profiles (L2D_PROFILE_DENSE=1). */
  ms?: number;
}

/** `kernels` of `l2d_context_stats` (CUDA; null on the CPU backend). */
export interface KernelInfo {
  mode: string;
  precision: string;
  default: string;
  cublasLt: string | null;
  cublasLt_why: string | null;
  cudnn: string | null;
  cudnn_why: string | null;
  profiling: boolean;
  vendor_errors?: number;
  last_vendor_error?: string | null;
  /** L2D_KERNELS=tune: "class shape" -> the candidates' milliseconds ("own=0.41 vendor=0.38"). */
  tuned?: Record<string, string>;
  /** class -> path ("simple" | "own" | "vendor") -> counters. */
  ops: Record<string, Record<string, KernelCounter>>;
}

/** One row of the per-layer-class report: per call of the stage. */
export interface LayerRow {
  class: string;
  path: string;
  calls: number;
  ms: number;
  gflop: number;
  tflops: number;
}

/** The dense-kernel counters of a context, or null (CPU backend, or a library without them). */
export function kernelInfo(stats: unknown): KernelInfo | null {
  const k = (stats as { kernels?: KernelInfo | null }).kernels;
  return k && typeof k === "object" && k.ops ? k : null;
}

/** Per-call rows of what ran between two snapshots (`iters` calls of a stage), busiest first. */
export function layerRows(after: KernelInfo, before: KernelInfo | null, iters: number): LayerRow[] {
  const rows: LayerRow[] = [];
  for (const [cls, paths] of Object.entries(after.ops)) {
    for (const [path, c] of Object.entries(paths)) {
      const b = before?.ops[cls]?.[path];
      const calls = (c.calls - (b?.calls ?? 0)) / iters;
      if (calls <= 0) continue;
      const gflop = (c.gflop - (b?.gflop ?? 0)) / iters;
      const ms = ((c.ms ?? NaN) - (b?.ms ?? 0)) / iters;
      rows.push({ class: cls, path, calls, ms: r3(ms), gflop: r3(gflop), tflops: r2(gflop / ms) });
    }
  }
  return rows.sort((a, b) => (b.ms - a.ms) || (b.gflop - a.gflop));
}

/** Dense calls between two snapshots, per path, divided by `frames`. */
export function densePerFrame(after: KernelInfo, before: KernelInfo | null, frames: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [cls, paths] of Object.entries(after.ops)) {
    for (const [path, c] of Object.entries(paths)) {
      const d = c.calls - (before?.ops[cls]?.[path]?.calls ?? 0);
      if (d > 0) out[path] = (out[path] ?? 0) + d / frames;
    }
  }
  for (const k of Object.keys(out)) out[k] = r2(out[k]!);
  return out;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Median of unsorted values. */
function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5);
}

/** Parses "512x512,768x512" (width x height). */
export function parseSizes(text: string): Array<[number, number]> {
  return text.split(",").filter(Boolean).map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) throw new TypeError(`--sizes: "${s}" is not WIDTHxHEIGHT`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
}

/** Parses "2,4" (streams at once; "" or "0": none). */
export function parseConcurrency(text: string): number[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s && s !== "0").map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 16) {
      throw new TypeError(`--concurrency: "${s}" is not an integer in 1..16`);
    }
    return n;
  });
}

/** Parses "2,3". */
export function parseSteps(text: string): number[] {
  return text.split(",").filter(Boolean).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 8) throw new TypeError(`--steps: "${s}" is not an integer in 1..8`);
    return n;
  });
}

/** A t_index_list of `steps` entries: the style's own when it has that many, else evenly spaced over its range. */
export function tIndexFor(style: readonly number[], steps: number): number[] {
  if (style.length === steps) return [...style];
  const lo = style[0] ?? 30, hi = style[style.length - 1] ?? 42;
  if (steps === 1) return [hi];
  return Array.from({ length: steps }, (_, i) => Math.round(lo + (hi - lo) * i / (steps - 1)));
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const mb = (b: number) => (b / 2 ** 20).toFixed(0);

/** Deterministic, non-constant RGB test frames (a moving pattern plus noise; never all zeros). */
function makeFrames(width: number, height: number, count: number): Uint8Array[] {
  let s = 0x12345678;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) & 0x3f;
  };
  return Array.from({ length: count }, (_, f) => {
    const d = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 3;
        d[i] = (x * 255 / width + f * 9 + rnd()) & 0xff;
        d[i + 1] = (y * 255 / height + rnd()) & 0xff;
        d[i + 2] = ((x + y + f * 5) & 0x7f) + rnd();
      }
    }
    return d;
  });
}

/** The blocking twin of `l2d_stream_push` (same library, same handle table). */
function blockingPush() {
  const path = libraryCandidates().find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!path) throw new Error("Cannot find liblive2diff for the blocking binding");
  native(); // the library the public API uses, loaded first (ABI checked there)
  return Deno.dlopen(path, { l2d_stream_push: { ...symbols.l2d_stream_push, nonblocking: false } } as const);
}

function deviceName(device: string): string {
  if (device === "cuda") {
    try {
      const out = new Deno.Command("nvidia-smi", {
        args: ["--query-gpu=name,driver_version", "--format=csv,noheader"],
        stdout: "piped",
        stderr: "null",
      }).outputSync();
      const text = new TextDecoder().decode(out.stdout).trim().split("\n")[0];
      if (text) return text;
    } catch {
      // no nvidia-smi
    }
    return "cuda";
  }
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim();
    return `${model ?? "cpu"} (${navigator.hardwareConcurrency} threads)`;
  } catch {
    return `cpu (${navigator.hardwareConcurrency} threads)`;
  }
}

/** Options of {@linkcode runBench}. */
export interface BenchOptions {
  device: "cpu" | "cuda";
  precision?: "fp16" | "fp32";
  engine?: string;
  configs: BenchConfig[];
  frames: number;
  /** Untimed pushes after the warm-up and latency frames. */
  extraWarmup: number;
  stageIters: number;
  stages: boolean;
  /** Per-layer-class profile pass (CUDA). @default false */
  layers?: boolean;
  /** L2D_KERNELS for every context of the run (unset: the library default, "auto"). */
  kernels?: "auto" | "simple" | "own" | "vendor" | "tune";
  /** Stop a configuration's timed frames after this many seconds. */
  maxSeconds: number;
  /** Pushes with stage profiling on after the timed ones (0: none). @default 0 */
  profileFrames?: number;
  /** Concurrency levels (streams pushed at once on the engine) at the first configuration. @default [] */
  concurrency?: number[];
  /**
   * Whole-run budget in seconds (engine build and load included): later configurations and the stage
   * timings are skipped when it runs short, so a summary is always printed. @default Infinity
   */
  budget?: number;
  log: (line: string) => void;
  /**
   * Called with the single-stream results before the concurrency part starts (the CLI prints them
   * as a JSON line, so a crash with several streams on one context still leaves them).
   */
  partial?: (summary: Record<string, unknown>) => void;
}

async function defaultEngine(device: "cpu" | "cuda", log: (s: string) => void): Promise<string> {
  if (device === "cpu") {
    using e = await Engine.loadDefault({ device: "cpu" });
    return e.path;
  }
  const path = "models/engines/synthetic-sd15-sm_90.l2de";
  try {
    await Deno.stat(path);
  } catch {
    log(`building ${path} (synthetic sd15, sm_90; like deno task make-synthetic-engine --preset sd15 --target sm_90)`);
    const { makeSyntheticEngine } = await import("../engines/synthetic.ts");
    await Deno.mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`;
    const r = await makeSyntheticEngine({ preset: "sd15", target: "sm_90", out: tmp, quiet: true });
    await Deno.rename(tmp, path);
    log(`built ${path}: ${mb(r.bytes)} MiB in ${r.seconds.toFixed(1)} s`);
  }
  return path;
}

/** Seconds of the budget left (Infinity without one). */
function remaining(o: BenchOptions, started: number): number {
  return (o.budget ?? Infinity) - (performance.now() - started) / 1000;
}

/** Runs the stream part of every configuration (skipping those the budget has no room for). */
async function streamBench(
  engine: Engine,
  o: BenchOptions,
  started: number,
  skipped: BenchConfig[],
  keep: Stream[],
) {
  const raw = blockingPush();
  const results: BenchResult[] = [];
  try {
    for (const cfg of o.configs) {
      const { width, height, steps } = cfg;
      const left = remaining(o, started);
      if (left < 0.2 * (o.budget ?? Infinity)) {
        o.log(`${width}x${height} T=${steps}: skipped (${left.toFixed(0)} s of the budget left)`);
        skipped.push(cfg);
        continue;
      }
      const maxSeconds = Math.min(o.maxSeconds, left * 0.4);
      const stream = await engine.createStream({
        prompt: "an oil painting of a lighthouse",
        width,
        height,
        tIndexList: tIndexFor(engine.style.t_index_list, steps),
      });
      // The first configuration's stream, warmed up, is kept for the concurrency part (one warm-up less).
      const kept = results.length === 0 && (o.concurrency?.length ?? 0) > 0;
      using _closer = { [Symbol.dispose]: () => kept ? keep.push(stream) : stream.close() };
      const frames = makeFrames(width, height, 5);
      const frame = (i: number) => ({ data: frames[i % frames.length]!, width, height, channels: 3 as const });
      // Warm-up: the 8 sink frames, the T-1 latency frames, then a few more (allocations, caches).
      const warm = WARMUP_FRAMES + stream.latency + o.extraWarmup;
      const t0 = performance.now();
      for (let i = 0; i < warm; i++) await stream.push(frame(i));
      const warmSeconds = (performance.now() - t0) / 1000;

      const handle = stream.session.unsafeHandle;
      const out = new Uint8Array(width * height * 3), ready = new Int32Array(1);
      const pub: number[] = [], nat: number[] = [];
      const statsBefore = engine.stats();
      const kernelsBefore = kernelInfo(statsBefore);
      const timed = performance.now();
      let stopped = false;
      for (let i = 0; i < 2 * o.frames; i++) {
        const f = frame(warm + i);
        if (i % 2 === 0) {
          const a = performance.now();
          const y = await stream.push(f);
          pub.push(performance.now() - a);
          if (!y) throw new Error("a streamed push returned no frame");
        } else {
          const a = performance.now();
          const status = raw.symbols.l2d_stream_push(
            handle,
            f.data,
            BigInt(f.data.length),
            width,
            height,
            3,
            out,
            BigInt(out.length),
            ready,
          );
          nat.push(performance.now() - a);
          if (status !== 0) {
            throw new Error(`l2d_stream_push: ${readCString(native().l2d_session_last_error(handle))} (${status})`);
          }
        }
        if (i % 2 === 1 && (performance.now() - timed) / 1000 > maxSeconds) {
          stopped = i + 1 < 2 * o.frames;
          break;
        }
      }
      const stats = engine.stats();
      const kernelsAfter = kernelInfo(stats);
      const stages = await profiledStages(engine, o.profileFrames ?? 0, stats, (i) => stream.push(frame(warm + i)));
      const sorted = [...pub].sort((a, b) => a - b);
      const total = pub.reduce((a, b) => a + b, 0);
      const p50 = percentile(sorted, 0.5), nativeP50 = median(nat);
      const r: BenchResult = {
        width,
        height,
        steps,
        frames: pub.length,
        fps: r2(1000 * pub.length / total),
        p50_ms: r2(p50),
        p99_ms: r2(percentile(sorted, 0.99)),
        mean_ms: r2(total / pub.length),
        timed_seconds: r3(total / 1000),
        native_frames: nat.length,
        native_p50_ms: r2(nativeP50),
        ffi_overhead_ms: Math.round((p50 - nativeP50) * 1000) / 1000,
        backend_in_use_bytes: stats.bytes_in_use,
        backend_graph_reserved_bytes: stats.graph_reserved_bytes ?? 0,
        backend_peak_bytes: stats.peak_bytes,
        rss_bytes: Deno.memoryUsage().rss,
        ...(kernelsAfter
          ? { dense_per_frame: densePerFrame(kernelsAfter, kernelsBefore, pub.length + nat.length) }
          : {}),
        ...(hasFrameCounters(stats)
          ? {
            launches_per_frame: launchesPerFrame(statsBefore, stats, pub.length + nat.length),
            push_ms: pushTimes(statsBefore, stats),
          }
          : {}),
        ...(stages ? { stage_ms_per_frame: stages.ms, profiled_frames: stages.frames } : {}),
        ...(stopped ? { stopped_early: true } : {}),
      };
      results.push(r);
      o.log(
        `${width}x${height} T=${steps}: warm-up ${warm} frames ${warmSeconds.toFixed(1)} s; ` +
          `${r.frames} public + ${r.native_frames} native pushes: ${r.fps} fps, p50 ${r.p50_ms} ms, ` +
          `native p50 ${r.native_p50_ms} ms${stopped ? " (stopped at --max-seconds)" : ""}`,
      );
    }
  } finally {
    raw.close();
  }
  return results;
}

/**
 * Pushes `frames` more frames with the context's stage profiling on and returns the milliseconds per
 * frame of each stage (null: no frames asked, a library without the counters, or nothing marked).
 */
async function profiledStages(
  engine: Engine,
  frames: number,
  stats: ContextStats,
  push: (i: number) => Promise<unknown>,
): Promise<{ ms: Record<string, number> | null; frames: number } | null> {
  if (frames <= 0 || !hasFrameCounters(stats)) return null;
  engine.profileStages(true);
  try {
    const before = engine.stats();
    for (let i = 0; i < frames; i++) await push(1000 + i);
    return { ms: stageMsPerFrame(before, engine.stats()), frames };
  } finally {
    engine.profileStages(false);
  }
}

/** The concurrency levels at the first configuration that ran (budget permitting). */
async function concurrencyBench(
  engine: Engine,
  o: BenchOptions,
  started: number,
  ran: BenchResult[],
  warm: Stream | undefined,
): Promise<ConcurrentResult[]> {
  const out: ConcurrentResult[] = [];
  const cfg = ran[0];
  if (!cfg) return out;
  const frames = makeFrames(cfg.width, cfg.height, 5);
  for (const n of o.concurrency ?? []) {
    const left = remaining(o, started);
    if (left < 0.15 * (o.budget ?? Infinity)) {
      o.log(`${n} concurrent streams: skipped (${left.toFixed(0)} s of the budget left)`);
      continue;
    }
    const r = await concurrentBench(engine, {
      streams: n,
      width: cfg.width,
      height: cfg.height,
      tIndexList: tIndexFor(engine.style.t_index_list, cfg.steps),
      frames: o.frames,
      extraWarmup: Math.min(1, o.extraWarmup),
      reuse: warm,
      maxSeconds: Math.min(o.maxSeconds, left * 0.3),
      frame: (i) => ({ data: frames[i % frames.length]!, width: cfg.width, height: cfg.height, channels: 3 }),
    });
    out.push(r);
    o.log(
      `${n} concurrent streams ${cfg.width}x${cfg.height} T=${cfg.steps}: ${r.outputs} frames in ${r.seconds} s: ` +
        `${r.fps} fps (${r.fps_per_stream} per stream), p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`,
    );
  }
  return out;
}

/** A context of the run; `profile` turns on the dense-op event timing (L2D_PROFILE_DENSE, read at creation). */
function createContext(o: BenchOptions, profile: boolean): Context {
  if (profile) Deno.env.set("L2D_PROFILE_DENSE", "1");
  try {
    return Context.create(o.device, { precision: o.precision });
  } finally {
    if (profile) Deno.env.delete("L2D_PROFILE_DENSE");
  }
}

/**
 * Per-stage timings of separate model calls (see the module doc). With `layers`, the context profiles
 * its dense ops and each stage's per-call layer rows are stored there under the stage's label.
 */
async function stageBench(
  path: string,
  o: BenchOptions,
  started: number,
  layers?: Map<string, LayerRow[]>,
): Promise<Map<string, StageTimes>> {
  using file = await openEngine(path, { verify: false });
  using ctx = createContext(o, layers !== undefined);
  const make = async (kind: string, prefix: string, config: unknown) => {
    using w = new TensorMap();
    await file.loadInto(w, prefix);
    return await Model.create(ctx, kind, config, w);
  };
  const unetCfg: Record<string, unknown> = { ...file.config("unet") };
  const motion = unetCfg.unet_additional_kwargs;
  delete unetCfg.unet_additional_kwargs;
  const specFile = file.config("midas").spec as { spec?: Record<string, unknown> } | undefined;
  const midasCfg = specFile?.spec ? midasConfigFromSpec(specFile.spec) : { ...DPT_HYBRID_384_CONFIG };
  using unet = await make("unet", "unet.", { unet: unetCfg, motion });
  using vae = await make("taesd", "taesd.", file.config("taesd"));
  using depth = await make("midas", "midas.", midasCfg);
  const crossDim = Number(unetCfg.cross_attention_dim ?? 768);

  const time = async (label: string, fn: () => Promise<void>): Promise<number> => {
    await fn(); // warm-up call
    const before = layers ? kernelInfo(ctx.stats()) : null;
    const t: number[] = [];
    for (let i = 0; i < o.stageIters; i++) {
      const a = performance.now();
      await fn();
      t.push(performance.now() - a);
    }
    const after = layers ? kernelInfo(ctx.stats()) : null;
    if (layers && after) layers.set(label, layerRows(after, before, o.stageIters));
    return median(t);
  };
  const uniform = (n: number) => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = Math.sin(i * 12.9898) * 0.9;
    return v;
  };

  const out = new Map<string, StageTimes>();
  let depthMs = NaN;
  {
    using io = new TensorMap();
    io.setF32("images", uniform(3 * 384 * 384), [1, 3, 384, 384]);
    depthMs = await time("midas 384x384", () => depth.run("depth", io));
  }
  const perSize = new Map<string, { encode: number; decode: number }>();
  for (const { width, height, steps } of o.configs) {
    const h = height / 8, w = width / 8, key = `${width}x${height}`;
    if (remaining(o, started) < 0.1 * (o.budget ?? Infinity)) {
      o.log(`stages ${key} T=${steps}: skipped (budget)`);
      continue;
    }
    let sized = perSize.get(key);
    if (!sized) {
      using enc = new TensorMap();
      enc.setF32("images", uniform(3 * height * width), [1, 3, height, width]);
      const encode = await time(`taesd encode ${key}`, () => vae.run("encode", enc));
      using dec = new TensorMap();
      dec.setF32("latents", uniform(4 * h * w), [1, 4, h, w]);
      const decode = await time(`taesd decode ${key}`, () => vae.run("decode", dec));
      sized = { encode, decode };
      perSize.set(key, sized);
    }
    using session = unet.createSession({ steps, latent_height: h, latent_width: w });
    const F = WARMUP_FRAMES;
    for (let step = 0; step < steps; step++) {
      using io = new TensorMap();
      io.setPhilox("sample", [1, 4, F, h, w], { kind: "normal", seed: 11, stream: step });
      io.setPhilox("depth", [1, 4, F, h, w], { kind: "normal", seed: 12, stream: step });
      io.setPhilox("encoder_hidden_states", [1, 77, crossDim], { kind: "normal", seed: 13 });
      io.setI64("timestep", [999 - 100 * step], [1]);
      io.setI64("step", [step], [1]);
      await session.run("warmup", io);
    }
    using io = new TensorMap();
    io.setPhilox("sample", [steps, 4, 1, h, w], { kind: "normal", seed: 14 });
    io.setPhilox("depth", [steps, 4, 1, h, w], { kind: "normal", seed: 15 });
    io.setPhilox("encoder_hidden_states", [1, 77, crossDim], { kind: "normal", seed: 13 });
    io.setI64("timesteps", Array.from({ length: steps }, (_, i) => 999 - 100 * i), [steps]);
    const unetMs = await time(`unet ${key} T=${steps}`, () => session.run("stream", io));
    out.set(`${key}/${steps}`, {
      depth_midas_384: r2(depthMs),
      encode: r2(sized.encode),
      unet: r2(unetMs),
      decode: r2(sized.decode),
      sum_per_frame: r2(depthMs + 2 * sized.encode + unetMs + sized.decode),
    });
    o.log(`stages ${key} T=${steps}: ${JSON.stringify(out.get(`${key}/${steps}`))}`);
  }
  return out;
}

/** The unprofiled median of the stage a layer label names ("unet 512x512 T=2", "taesd encode 512x512", ...). */
function unprofiledStageMs(results: BenchResult[], label: string): number | undefined {
  const m = /^(unet|taesd encode|taesd decode|midas) (\d+)x(\d+)(?: T=(\d+))?$/.exec(label);
  if (!m) return undefined;
  const [, stage, w, h, t] = m;
  if (stage === "midas") return results.find((r) => r.stages_ms)?.stages_ms?.depth_midas_384;
  const r = results.find((r) => r.stages_ms && `${r.width}` === w && `${r.height}` === h && (!t || `${r.steps}` === t));
  if (!r?.stages_ms) return undefined;
  return stage === "unet" ? r.stages_ms.unet : stage === "taesd encode" ? r.stages_ms.encode : r.stages_ms.decode;
}

/** Runs the benchmark; returns the JSON summary. */
export async function runBench(o: BenchOptions): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  if (o.kernels) Deno.env.set("L2D_KERNELS", o.kernels); // read by every context created from here on
  const path = o.engine ?? await defaultEngine(o.device, o.log);
  let results: BenchResult[];
  let info: Record<string, unknown>;
  const skipped: BenchConfig[] = [];
  let stagesSkipped: string | undefined;
  let concurrent: ConcurrentResult[] = [];
  {
    const loading = performance.now();
    using engine = await Engine.load(path, { device: o.device, precision: o.precision });
    o.log(`engine ${path} loaded on ${o.device} in ${((performance.now() - loading) / 1000).toFixed(1)} s`);
    if (engine.notice) o.log(`note: ${engine.notice}`);
    info = { engine: path, synthetic: engine.synthetic };
    const kept: Stream[] = [];
    try {
      results = await streamBench(engine, o, t0, skipped, kept);
      if (o.concurrency?.length && o.partial) {
        o.partial({
          bench: "live2diff-stream",
          partial: "single-stream results, written before the concurrency part",
          device: o.device,
          device_name: deviceName(o.device),
          engine: path,
          configs: results,
        });
      }
      concurrent = await concurrencyBench(engine, o, t0, results, kept[0]);
    } finally {
      for (const s of kept) s.close();
    }
    const s = engine.stats();
    info.backend_peak_bytes = s.peak_bytes;
    info.backend = s.backend;
    const k = kernelInfo(s);
    if (k) {
      const { ops: _ops, ...rest } = k;
      info.kernels = rest;
      o.log(
        `dense kernels: ${k.mode} (${k.default}); cuBLASLt: ${k.cublasLt ?? k.cublasLt_why}; ` +
          `cuDNN: ${k.cudnn ?? k.cudnn_why}`,
      );
    }
  }
  if (o.stages && remaining(o, t0) < 0.3 * (o.budget ?? Infinity)) {
    stagesSkipped = `budget: ${remaining(o, t0).toFixed(0)} s of ${o.budget} s left`;
    o.log(`stage timings skipped (${stagesSkipped})`);
  } else if (o.stages) {
    const stages = await stageBench(path, o, t0);
    for (const r of results) r.stages_ms = stages.get(`${r.width}x${r.height}/${r.steps}`);
  }
  let layers: Record<string, { rows: LayerRow[]; dense_ms: number; other_ms?: number }> | undefined;
  if (o.layers && o.device === "cuda") {
    if (remaining(o, t0) < 0.15 * (o.budget ?? Infinity)) {
      o.log(`layer profile skipped (budget: ${remaining(o, t0).toFixed(0)} s left)`);
    } else {
      const byStage = new Map<string, LayerRow[]>();
      await stageBench(path, o, t0, byStage);
      layers = {};
      for (const [label, rows] of byStage) {
        const dense = rows.reduce((a, r) => a + r.ms * r.calls, 0);
        const stageMs = unprofiledStageMs(results, label);
        layers[label] = {
          rows,
          dense_ms: r3(dense),
          ...(stageMs !== undefined ? { other_ms: r3(stageMs - dense) } : {}),
        };
      }
    }
  }
  return {
    bench: "live2diff-stream",
    device: o.device,
    device_name: deviceName(o.device),
    precision: o.device === "cuda" ? (o.precision ?? "fp16") : "fp32",
    ...info,
    frames_requested: o.frames,
    configs: results,
    concurrent,
    stage_clock: o.device === "cuda"
      ? "CUDA events around each stage on the device"
      : "host wall clock (the CPU backend computes synchronously)",
    launches_note: o.device === "cuda"
      ? "kernels = <<<>>> launches; vendor_calls = cuBLASLt/cuDNN calls (one or more kernels each); graphs = " +
        "CUDA-graph launches; syncs = host waits for the device; copies = cudaMemcpy/cudaMemset calls (not " +
        "in the launches), graph_copies = copy nodes inside the graphs"
      : "CPU: no kernels; cpu_loops_stand_in = top-level thread-pool loops, a stand-in for launches; copies = " +
        "copies between caller and backend memory (frame up, output down, tensors in and out)",
    ...(skipped.length ? { skipped_configs: skipped } : {}),
    ...(stagesSkipped ? { stages_skipped: stagesSkipped } : {}),
    ...(layers ? { layers } : {}),
    peak: {
      backend_peak_bytes: info.backend_peak_bytes,
      rss_bytes: Deno.memoryUsage().rss,
    },
    stages_note: "per-stage ms are medians of separate native calls at the same sizes (tensor-map copies " +
      "included, frame resize excluded; encode counts twice per frame in sum_per_frame), not a breakdown of a push",
    deno: Deno.version.deno,
    seconds: r2((performance.now() - t0) / 1000),
  };
}

function printTable(summary: Record<string, unknown>, log: (s: string) => void): void {
  const rows = summary.configs as BenchResult[];
  const head = [
    "config",
    "frames",
    "fps",
    "p50 ms",
    "p99 ms",
    "native p50",
    "ffi ovh",
    "host ms",
    "launch/fr",
    "copy/fr",
    "depth",
    "encode",
    "unet",
    "decode",
    "in use MiB",
    "peak MiB",
    "rss MiB",
  ];
  const table = rows.map((r) => [
    `${r.width}x${r.height} T=${r.steps}`,
    String(r.frames),
    r.fps.toFixed(2),
    r.p50_ms.toFixed(2),
    r.p99_ms.toFixed(2),
    r.native_p50_ms.toFixed(2),
    r.ffi_overhead_ms.toFixed(3),
    r.push_ms ? r.push_ms.host_ms.toFixed(2) : "-",
    r.launches_per_frame ? String(r.launches_per_frame.host_issued) : "-",
    r.launches_per_frame ? String(r.launches_per_frame.copies) : "-",
    r.stages_ms?.depth_midas_384.toFixed(2) ?? "-",
    r.stages_ms?.encode.toFixed(2) ?? "-",
    r.stages_ms?.unet.toFixed(2) ?? "-",
    r.stages_ms?.decode.toFixed(2) ?? "-",
    mb(r.backend_in_use_bytes),
    mb(r.backend_peak_bytes),
    mb(r.rss_bytes),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!));
  log(`\n${summary.device_name} (${summary.device}, ${summary.precision}), engine ${summary.engine}`);
  log(line(head).join("  "));
  for (const row of table) log(line(row).join("  "));
  log("stage columns: medians of separate native calls at the same size (see scripts/bench.ts)");
  log(
    "host ms: push wall time minus device wait; launch/fr: kernels + vendor calls + graphs per push; " +
      "copy/fr: memory copies per push (not in launch/fr)",
  );
  for (const r of rows) {
    if (r.stage_ms_per_frame) {
      log(
        `${r.width}x${r.height} T=${r.steps} stages inside the push (${summary.stage_clock}, ${r.profiled_frames} ` +
          `frames): ` + Object.entries(r.stage_ms_per_frame).map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join(", "),
      );
    }
  }
  for (const c of (summary.concurrent ?? []) as ConcurrentResult[]) {
    log(
      `${c.streams} streams at once ${c.width}x${c.height} T=${c.steps}: ${c.fps.toFixed(2)} fps in total, ` +
        `${c.fps_per_stream.toFixed(2)} per stream, p50 ${c.p50_ms.toFixed(2)} ms, p99 ${c.p99_ms.toFixed(2)} ms`,
    );
  }
  log("");
  const layers = summary.layers as
    | Record<string, { rows: LayerRow[]; dense_ms: number; other_ms?: number }>
    | undefined;
  for (const [label, l] of Object.entries(layers ?? {})) {
    log(
      `${label}: dense ${l.dense_ms.toFixed(2)} ms` +
        (l.other_ms !== undefined ? `, other ${l.other_ms.toFixed(2)} ms` : ""),
    );
    for (const r of l.rows) {
      log(
        `  ${r.class.padEnd(22)} ${r.path.padEnd(7)} x${String(r.calls).padEnd(4)} ${r.ms.toFixed(3).padStart(8)} ms ` +
          `${r.gflop.toFixed(1).padStart(8)} GFLOP ${r.tflops.toFixed(1).padStart(7)} TFLOP/s`,
      );
    }
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      device: { type: "string" },
      precision: { type: "string" },
      engine: { type: "string" },
      frames: { type: "string" },
      sizes: { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string", default: "3" },
      "stage-iters": { type: "string" },
      "no-stages": { type: "boolean", default: false },
      "no-layers": { type: "boolean", default: false },
      kernels: { type: "string" },
      "max-seconds": { type: "string" },
      budget: { type: "string" },
      "profile-frames": { type: "string" },
      concurrency: { type: "string" },
      quick: { type: "boolean", default: false },
      compare: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const log = (s: string) => console.error(s);
  try {
    if (values.compare) {
      await compareMain(positionals);
      Deno.exit(0);
    }
    if (positionals.length) throw new TypeError(`unexpected arguments: ${positionals.join(" ")}`);
    // --quick: the smallest run that still exercises every part (the schema test uses it).
    if (values.quick) {
      values.sizes ??= "64x64";
      values.steps ??= "2";
      values.frames ??= "2";
      values.warmup = "0";
      values["no-stages"] = true;
      values["no-layers"] = true;
      values["profile-frames"] ??= "1";
      values.concurrency ??= "2";
    }
    const device = (values.device ?? (backendAvailable("cuda") ? "cuda" : "cpu")) as "cpu" | "cuda";
    if (device !== "cpu" && device !== "cuda") throw new TypeError(`--device must be cpu or cuda, got "${device}"`);
    const precision = values.precision as "fp16" | "fp32" | undefined;
    if (precision !== undefined && precision !== "fp16" && precision !== "fp32") {
      throw new TypeError(`--precision must be fp16 or fp32`);
    }
    const kernels = values.kernels as BenchOptions["kernels"];
    if (kernels !== undefined && !["auto", "simple", "own", "vendor", "tune"].includes(kernels)) {
      throw new TypeError(`--kernels must be auto, simple, own, vendor or tune, got "${kernels}"`);
    }
    let configs: BenchConfig[];
    if (values.sizes || values.steps) {
      const sizes = parseSizes(values.sizes ?? (device === "cuda" ? "512x512" : "64x64,128x128"));
      const steps = parseSteps(values.steps ?? "2,3");
      configs = sizes.flatMap(([width, height]) => steps.map((s) => ({ width, height, steps: s })));
    } else {
      configs = device === "cuda"
        ? [{ width: 512, height: 512, steps: 2 }, { width: 512, height: 512, steps: 3 }, {
          width: 768,
          height: 512,
          steps: 2,
        }]
        : [64, 128].flatMap((s) => [2, 3].map((t) => ({ width: s, height: s, steps: t })));
    }
    const int = (v: string | undefined, d: number, name: string) => {
      const n = v === undefined ? d : Number(v);
      if (!(n > 0)) throw new TypeError(`--${name} must be a positive number`);
      return n;
    };
    const summary = await runBench({
      device,
      precision,
      engine: values.engine,
      configs,
      frames: Math.round(int(values.frames, device === "cuda" ? 50 : 20, "frames")),
      extraWarmup: Math.round(Number(values.warmup)),
      stageIters: Math.round(int(values["stage-iters"], device === "cuda" ? 20 : 5, "stage-iters")),
      stages: !values["no-stages"],
      layers: !values["no-layers"],
      kernels,
      maxSeconds: int(values["max-seconds"], 60, "max-seconds"),
      profileFrames: values["profile-frames"] === "0"
        ? 0
        : Math.round(int(values["profile-frames"], 10, "profile-frames")),
      concurrency: parseConcurrency(values.concurrency ?? "2,4"),
      partial: (s) => console.log(JSON.stringify(s)),
      budget: values.budget === undefined ? undefined : int(values.budget, 0, "budget"),
      log,
    });
    printTable(summary, log);
    console.log(JSON.stringify(summary));
  } catch (e) {
    const describe = (x: unknown) => x instanceof Error ? x.stack ?? x.message : String(x);
    console.error(`bench: ${describe(e)}`);
    // An error while disposing after another one: say both (the first is usually the cause).
    if (e instanceof SuppressedError) {
      console.error(`  error: ${describe(e.error)}\n  suppressed: ${describe(e.suppressed)}`);
    }
    Deno.exit(1);
  }
}
