/**
 * An engine with a known, controllable cost for the server's scheduling tests: pushes take
 * `pushMs` (awaited, off the event loop like the real native calls), the 8th push runs a
 * `warmupMs` warm-up, and outputs start `steps - 1` pushes after it (at push 8 + steps), like the
 * real engine. Its
 * outputs are solid frames whose value is the stream's seed, so each client can check its own.
 *
 * @module
 */

import type { Frame, StreamOptions } from "../../mod.ts";
import type { ServerEngine, ServerStream } from "../../examples/server/app.ts";

/** Costs of a {@linkcode timedEngine} (ms). */
export interface TimedCost {
  warmupMs: number;
  pushMs: number;
}

/** Counters shared by every stream of one engine. */
export interface TimedEngineStats {
  /** Native calls running now (must never exceed 1: the server serialises them). */
  running: number;
  maxRunning: number;
  pushes: number;
  streams: number;
  /** Streams closed. */
  closes: number;
  /** Streams closed while a call (of any stream) ran: must stay 0 (releases are scheduled too). */
  closesDuringCalls: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Makes an engine whose calls take the given times. */
export function timedEngine(cost: TimedCost): ServerEngine & { stats: TimedEngineStats } {
  const stats: TimedEngineStats = { running: 0, maxRunning: 0, pushes: 0, streams: 0, closes: 0, closesDuringCalls: 0 };
  const busy = async <T>(ms: number, fn: () => T): Promise<T> => {
    stats.running++;
    stats.maxRunning = Math.max(stats.maxRunning, stats.running);
    try {
      await sleep(ms);
      return fn();
    } finally {
      stats.running--;
    }
  };
  return {
    device: "cpu",
    synthetic: true,
    notice: "timed test engine",
    stats,
    createStream(options: StreamOptions): Promise<ServerStream> {
      stats.streams++;
      const steps = options.steps ?? 2, width = options.width ?? 64, height = options.height ?? width;
      const value = (options.seed ?? 0) & 255;
      let pushes = 0, closed = false;
      const stream: ServerStream = {
        width,
        height,
        steps,
        latency: steps - 1,
        setPrompt: () => busy(1, () => {}),
        close: () => {
          if (closed) return;
          closed = true;
          stats.closes++;
          if (stats.running > 0) stats.closesDuringCalls++;
        },
        get closed() {
          return closed;
        },
        push(_frame: Frame): Promise<Frame | null> {
          if (closed) return Promise.reject(new Error("stream closed"));
          const n = ++pushes;
          stats.pushes++;
          const ms = n < 8 ? 0 : n === 8 ? cost.warmupMs : cost.pushMs;
          return busy(
            ms,
            () =>
              n < 8 + steps
                ? null
                : { data: new Uint8Array(width * height * 3).fill(value), width, height, channels: 3 as const },
          );
        },
      } as ServerStream;
      return Promise.resolve(stream);
    },
  };
}
