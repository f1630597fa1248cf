/**
 * Several devices in one process: an engine per device (`cpu`, `cuda:0`, `cuda:1`, ...), each with
 * its own FIFO queue of native calls and a number of stream slots. New streams go to the device
 * with the most free capacity ({@linkcode pickDevice}). The CPU backend stands in for GPUs in tests
 * (several CPU engines in one worker).
 *
 * @module
 */

import type { Frame } from "../mod.ts";
import { Engine } from "../mod.ts";
import type { DeviceAdvert } from "./protocol.ts";
import { pickDevice } from "./placement.ts";

/** What a worker needs of a stream (implemented by {@linkcode Stream} and the echo stand-in). */
export interface LiveStream {
  readonly width: number;
  readonly height: number;
  /** Pushes before a push's own frame comes out (T - 1). */
  readonly latency: number;
  push(frame: Frame): Promise<Frame | null>;
  setPrompt(prompt: string): Promise<void>;
  close(): void;
}

/** Options of a new stream. */
export interface LiveStreamOptions {
  prompt: string;
  width: number;
  height: number;
  seed: number;
  strength?: number;
  steps?: number;
}

/** What a worker needs of an engine (implemented by {@linkcode Engine} and the echo stand-in). */
export interface StreamHost {
  readonly device: string;
  readonly synthetic: boolean;
  readonly notice: string | null;
  createStream(options: LiveStreamOptions): Promise<LiveStream>;
  stats(): { bytes_in_use: number };
  close(): void;
}

/** A parsed `--devices` entry. */
export interface DeviceSpec {
  backend: "cpu" | "cuda";
  /** CUDA ordinal (0 on the CPU). */
  index: number;
}

/**
 * Parses a device list: `cpu`, `cuda`, `cuda:1`, `cuda:0-3`, comma separated (`cpu,cpu` gives two
 * CPU engines: stand-ins for two GPUs).
 */
export function parseDevices(text: string): DeviceSpec[] {
  const out: DeviceSpec[] = [];
  for (const raw of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (raw === "cpu") {
      out.push({ backend: "cpu", index: 0 });
      continue;
    }
    const m = /^cuda(?::(\d+)(?:-(\d+))?)?$/.exec(raw);
    if (!m) throw new RangeError(`--devices: "${raw}" is not cpu, cuda, cuda:N or cuda:N-M`);
    const first = Number(m[1] ?? 0), last = Number(m[2] ?? first);
    if (last < first || last > 63) throw new RangeError(`--devices: bad range "${raw}"`);
    for (let i = first; i <= last; i++) out.push({ backend: "cuda", index: i });
  }
  if (out.length === 0) throw new RangeError("--devices: no device given");
  if (out.length > 64) throw new RangeError("--devices: at most 64 devices");
  return out;
}

/**
 * Serialises async work (native handles of one engine must not run concurrently): FIFO, except
 * that urgent work goes before the normal work waiting. Urgent is for calls that take next to no
 * time, such as the first warm-up pushes (they only store the frame): without it a new stream
 * would wait a full round of every other stream's pushes for each of its 8 warm-up frames.
 */
export class SerialQueue {
  readonly #urgent: (() => void)[] = [];
  readonly #normal: (() => void)[] = [];
  #busy = false;
  /** Calls queued or running. */
  waiting = 0;

  /** Runs `fn` after the work before it (urgent work: after the running call and earlier urgent work). */
  run<T>(fn: () => Promise<T>, urgent = false): Promise<T> {
    this.waiting++;
    return new Promise<T>((resolve, reject) => {
      const task = () => {
        Promise.resolve().then(fn).then(resolve, reject).finally(() => {
          this.waiting--;
          this.#busy = false;
          this.#next();
        });
      };
      (urgent ? this.#urgent : this.#normal).push(task);
      this.#next();
    });
  }

  #next() {
    if (this.#busy) return;
    const task = this.#urgent.shift() ?? this.#normal.shift();
    if (!task) return;
    this.#busy = true;
    task();
  }
}

/** One device: its engine, queue, slots and recent pushes. */
export class Device {
  readonly queue = new SerialQueue();
  used = 0;
  /** Last 5 s of pushes: time and whether one gave an output (bounded by time). */
  readonly #recent: { t: number; out: boolean }[] = [];

  constructor(readonly name: string, readonly host: StreamHost, readonly slots: number) {}

  /** Records a push for the FPS figure. */
  recordPush(out: boolean): void {
    const now = performance.now();
    this.#recent.push({ t: now, out });
    while (this.#recent.length && this.#recent[0]!.t < now - 5000) this.#recent.shift();
  }

  /** Output frames per second over the last 5 s. */
  fps(): number {
    const since = performance.now() - 5000;
    return this.#recent.filter((r) => r.t >= since && r.out).length / 5;
  }

  /** The advertised state. */
  advert(): DeviceAdvert {
    let bytesInUse = 0;
    try {
      bytesInUse = this.host.stats().bytes_in_use;
    } catch { /* closed */ }
    return {
      name: this.name,
      slots: this.slots,
      used: this.used,
      fps: this.fps(),
      queue: this.queue.waiting,
      bytesInUse,
    };
  }
}

/** The devices of one worker. */
export class DevicePool {
  constructor(readonly devices: readonly Device[]) {
    if (devices.length === 0) throw new RangeError("A device pool needs at least one device");
  }

  /** Loads an engine per device (the default engine when `engine` is not given). */
  static async load(
    specs: readonly DeviceSpec[],
    options: { engine?: string; slotsPerDevice: number; threads?: number },
  ): Promise<DevicePool> {
    const devices: Device[] = [];
    try {
      for (const [i, spec] of specs.entries()) {
        const load = { device: spec.backend, deviceIndex: spec.index, threads: options.threads };
        const engine = options.engine ? await Engine.load(options.engine, load) : await Engine.loadDefault(load);
        const name = spec.backend === "cuda" ? `cuda:${spec.index}` : specs.length > 1 ? `cpu:${i}` : "cpu";
        devices.push(new Device(name, engine, options.slotsPerDevice));
      }
    } catch (e) {
      for (const d of devices) d.host.close();
      throw e;
    }
    return new DevicePool(devices);
  }

  /** Takes a slot on the device with the most free capacity; null when all are full. */
  acquire(): Device | null {
    const i = pickDevice(this.devices.map((d) => d.advert()));
    if (i < 0) return null;
    const d = this.devices[i]!;
    d.used++;
    return d;
  }

  /** Returns a slot taken by {@linkcode acquire}. */
  release(device: Device): void {
    device.used = Math.max(0, device.used - 1);
  }

  /** Free slots over all devices. */
  free(): number {
    return this.devices.reduce((a, d) => a + Math.max(0, d.slots - d.used), 0);
  }

  /** Closes every engine (open streams keep their weights alive). */
  close(): void {
    for (const d of this.devices) d.host.close();
  }
}
