/**
 * Several streams on ONE engine (one context, one GPU) pushed at the same time: each stream is its own
 * async loop of `stream.push` calls, so the native pushes run on parallel FFI worker threads, as the
 * webcam server's clients do. Reports the aggregate FPS (outputs of all streams / wall seconds).
 *
 * @module
 */

import type { Engine } from "../../ffi/engine.ts";
import type { Frame, Stream } from "../../ffi/stream.ts";
import { WARMUP_FRAMES } from "../../ffi/stream.ts";
import { type LaunchesPerFrame, launchesPerFrame } from "./frame_counters.ts";

/** Result of one concurrency level (JSON field names). */
export interface ConcurrentResult {
  streams: number;
  width: number;
  height: number;
  steps: number;
  /** Frames delivered by all streams together in the timed part. */
  outputs: number;
  seconds: number;
  /** outputs / seconds. */
  fps: number;
  /** fps / streams. */
  fps_per_stream: number;
  /** Latency of single pushes while the others run (nearest-rank percentiles). */
  p50_ms: number;
  p99_ms: number;
  launches_per_frame?: LaunchesPerFrame | null;
  stopped_early?: boolean;
}

/** Options of {@linkcode concurrentBench}. */
export interface ConcurrentOptions {
  streams: number;
  width: number;
  height: number;
  tIndexList: number[];
  /** Timed pushes per stream. */
  frames: number;
  /** Untimed pushes per stream after its warm-up and latency frames. */
  extraWarmup: number;
  /** Each loop stops after this many seconds of timed pushing. */
  maxSeconds: number;
  /** A warmed-up stream of this size and steps to use as the first one (not closed here). */
  reuse?: Stream;
  /** The i-th test frame (deterministic). */
  frame: (i: number) => Frame;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Runs `streams` streams at once on `engine`; every stream is warmed up first (untimed). */
export async function concurrentBench(engine: Engine, o: ConcurrentOptions): Promise<ConcurrentResult> {
  // One after the other: creating a stream encodes its prompt on the engine's one text model.
  const streams: Stream[] = o.reuse ? [o.reuse] : [];
  const fresh = new Set<Stream>();
  try {
    while (streams.length < o.streams) {
      streams.push(
        await engine.createStream({
          prompt: "an oil painting of a lighthouse",
          width: o.width,
          height: o.height,
          tIndexList: o.tIndexList,
        }),
      );
      fresh.add(streams[streams.length - 1]!);
    }
    // Warm-up (sink frames + latency + extra), all streams at once: it is not timed.
    await Promise.all([...fresh].map(async (s, k) => {
      for (let i = 0; i < WARMUP_FRAMES + s.latency + o.extraWarmup; i++) await s.push(o.frame(i + k));
    }));
    const before = engine.stats();
    const latencies: number[] = [];
    let outputs = 0, stopped = false;
    const t0 = performance.now();
    await Promise.all(streams.map(async (s, k) => {
      for (let i = 0; i < o.frames; i++) {
        if ((performance.now() - t0) / 1000 > o.maxSeconds) {
          stopped = true;
          return;
        }
        const a = performance.now();
        const out = await s.push(o.frame(100 + i + k));
        latencies.push(performance.now() - a);
        if (!out) throw new Error("a streamed push returned no frame");
        outputs++;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    const fps = outputs / seconds;
    return {
      streams: o.streams,
      width: o.width,
      height: o.height,
      steps: o.tIndexList.length,
      outputs,
      seconds: Math.round(seconds * 1000) / 1000,
      fps: r2(fps),
      fps_per_stream: r2(fps / o.streams),
      p50_ms: r2(percentile(sorted, 0.5)),
      p99_ms: r2(percentile(sorted, 0.99)),
      launches_per_frame: launchesPerFrame(before, engine.stats(), outputs),
      ...(stopped ? { stopped_early: true } : {}),
    };
  } finally {
    for (const s of fresh) s.close();
  }
}
