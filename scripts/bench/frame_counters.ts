/**
 * Per-frame figures of the bench from two `l2d_context_stats` snapshots taken around a run of pushes:
 * launches per frame, host milliseconds per frame and per-stage milliseconds (see cuda/include/l2d.h,
 * `l2d_context_stats`, for what the native counters count).
 *
 * @module
 */

import type { ContextStats, LaunchCounts } from "../../ffi/native.ts";

/** Launches per pushed frame (differences of `launches` divided by the pushes between the snapshots). */
export interface LaunchesPerFrame {
  /** CUDA kernel launches issued eagerly. */
  kernels: number;
  /** cuBLASLt / cuDNN calls (each one or more kernels). */
  vendor_calls: number;
  /** CUDA-graph launches. */
  graphs: number;
  /** Kernel nodes inside the graphs launched. */
  graph_kernels: number;
  /** Launches recorded into graphs (capture), not run. */
  captured_kernels: number;
  /** CPU backend: top-level thread-pool loops, the CPU's stand-in for kernel launches. */
  cpu_loops_stand_in: number;
  /** Host waits for the device (stream / event synchronisations; 0 on the CPU). */
  syncs: number;
  /** What the host issued per frame: kernels + vendor_calls + graphs (+ cpu_loops on the CPU). */
  host_issued: number;
  /**
   * Memory copies and fills the host issued per frame, apart from the launches (the frame up, the
   * output down, ...; the goal per frame is "1 graph launch + the copies"). 0 from older libraries.
   */
  copies: number;
  /** Memcpy / memset nodes inside the graphs launched, per frame. */
  graph_copies: number;
  /** Copies recorded into graphs (capture), not run. */
  captured_copies: number;
}

/** Host time of the pushes between two snapshots, per push. */
export interface PushTimes {
  /** Pushes between the snapshots. */
  pushes: number;
  /** Wall time inside `l2d_stream_push`. */
  wall_ms: number;
  /** Time blocked waiting for the device inside it (0 on the CPU, whose work is host work). */
  device_wait_ms: number;
  /** wall - device wait: what the host itself spent (launch overhead, host-side preparation). */
  host_ms: number;
  /** CPU time of the pushing thread (on CUDA it includes spin-waiting in the stream syncs). */
  thread_cpu_ms: number;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** True when the library reports launch counters (a library built before them does not). */
export function hasFrameCounters(s: ContextStats): boolean {
  return s.launches !== undefined && s.push !== undefined;
}

/** Launches per frame between two snapshots; null when the library has no counters or no frames ran. */
export function launchesPerFrame(before: ContextStats, after: ContextStats, frames: number): LaunchesPerFrame | null {
  const a = before.launches, b = after.launches;
  if (!a || !b || !(frames > 0)) return null;
  // The counters every library with counters reports (syncs and the copies came later: optional).
  const d = (k: Exclude<keyof LaunchCounts, "syncs" | "copies" | "graph_copies" | "captured_copies">) =>
    r3((b[k] - a[k]) / frames);
  const out = {
    kernels: d("kernels"),
    vendor_calls: d("vendor_calls"),
    graphs: d("graphs"),
    graph_kernels: d("graph_kernels"),
    captured_kernels: d("captured_kernels"),
    cpu_loops_stand_in: d("cpu_loops"),
    syncs: b.syncs === undefined ? 0 : r3((b.syncs - (a.syncs ?? 0)) / frames),
  };
  const opt = (k: "copies" | "graph_copies" | "captured_copies") => r3(((b[k] ?? 0) - (a[k] ?? 0)) / frames);
  return {
    ...out,
    host_issued: r3(out.kernels + out.vendor_calls + out.graphs + out.cpu_loops_stand_in),
    copies: opt("copies"),
    graph_copies: opt("graph_copies"),
    captured_copies: opt("captured_copies"),
  };
}

/** Push times per push between two snapshots; null without counters or pushes. */
export function pushTimes(before: ContextStats, after: ContextStats): PushTimes | null {
  const a = before.push, b = after.push;
  if (!a || !b) return null;
  const pushes = b.calls - a.calls;
  if (!(pushes > 0)) return null;
  const wall = (b.wall_ms - a.wall_ms) / pushes, wait = (b.device_wait_ms - a.device_wait_ms) / pushes;
  return {
    pushes,
    wall_ms: r3(wall),
    device_wait_ms: r3(wait),
    host_ms: r3(Math.max(0, wall - wait)),
    thread_cpu_ms: r3((b.thread_cpu_ms - a.thread_cpu_ms) / pushes),
  };
}

/**
 * Milliseconds per frame of each stage ("encode", "depth", "unet", "decode") timed between two
 * snapshots, plus their `sum`; null when no stage was timed (profiling off, or CUDA graphs replaying:
 * no host code runs inside a graph, so its stages are not marked).
 */
export function stageMsPerFrame(before: ContextStats, after: ContextStats): Record<string, number> | null {
  const a = before.stages_ms ?? {}, b = after.stages_ms ?? {};
  const out: Record<string, number> = {};
  let sum = 0;
  for (const [name, t] of Object.entries(b)) {
    const calls = t.calls - (a[name]?.calls ?? 0);
    if (calls <= 0) continue;
    const ms = (t.ms - (a[name]?.ms ?? 0)) / calls;
    out[name] = r3(ms);
    sum += ms;
  }
  if (Object.keys(out).length === 0) return null;
  out.sum = r3(sum);
  return out;
}
