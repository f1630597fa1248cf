/**
 * How many clients an engine can serve: its measured cost per stream (warm-up, then each push),
 * and from that the most clients that can all get a first output within a time budget when they
 * arrive together. The server admits no more than that, so its advertised maximum is one it keeps.
 *
 * @module
 */

import type { Frame } from "../../mod.ts";
import type { ServerEngine } from "./engine_types.ts";

/** An engine's cost per stream at one size (ms). */
export interface EngineCost {
  /** The push that runs the 8-frame warm-up. */
  warmupMs: number;
  /** A regular push. */
  pushMs: number;
  /** Pushes between a frame and its output (the default stream's latency). */
  latency: number;
}

/** Warm-up frames the engine buffers before it starts (the 8th push runs the warm-up). */
export const WARMUP_PUSHES = 8;

const cache = new WeakMap<object, Map<string, Promise<EngineCost>>>();

/**
 * Measures an engine at a stream size once (cached per engine and size): one default stream,
 * fed mid-grey frames through its warm-up and two regular pushes.
 */
export function calibrate(engine: ServerEngine, width: number, height: number): Promise<EngineCost> {
  let sizes = cache.get(engine);
  if (!sizes) cache.set(engine, sizes = new Map());
  const key = `${width}x${height}`;
  let cost = sizes.get(key);
  if (!cost) {
    cost = measure(engine, width, height);
    cost.catch(() => sizes.delete(key)); // retried on the next need
    sizes.set(key, cost);
  }
  return cost;
}

async function measure(engine: ServerEngine, width: number, height: number): Promise<EngineCost> {
  const stream = await engine.createStream({ prompt: "", width, height });
  try {
    const frame: Frame = { data: new Uint8Array(width * height * 3).fill(128), width, height, channels: 3 };
    for (let i = 1; i < WARMUP_PUSHES; i++) await stream.push(frame);
    let t = performance.now();
    await stream.push(frame);
    const warmupMs = performance.now() - t;
    const pushes: number[] = [];
    for (let i = 0; i < 2; i++) {
      t = performance.now();
      await stream.push(frame);
      pushes.push(performance.now() - t);
    }
    return { warmupMs, pushMs: Math.max(...pushes), latency: stream.latency };
  } finally {
    stream.close();
  }
}

/** Engine time a newcomer needs before its first output: its warm-up plus `latency + 1` pushes. */
export function firstFrameWorkMs(cost: EngineCost): number {
  return cost.warmupMs + (cost.latency + 1) * cost.pushMs;
}

/**
 * The most clients that all get a first output within `budgetMs` when they start together (each
 * one's first-output work runs once per client before the last one's first output), at least 1.
 */
export function servableClients(cost: EngineCost, budgetMs: number): number {
  return Math.max(1, Math.floor(budgetMs / Math.max(1e-3, firstFrameWorkMs(cost))));
}

/** Folds a new measurement into a running estimate (exponential moving average). */
export function updateCost(cost: EngineCost, kind: "warmupMs" | "pushMs", ms: number): void {
  cost[kind] = 0.8 * cost[kind] + 0.2 * ms;
}
