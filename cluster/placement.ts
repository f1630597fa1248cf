/**
 * Placement rules, as pure functions: which device of a worker gets a new stream, and which
 * worker gets a new session. Both prefer the most free stream slots, then the shortest queue of
 * native calls, then the least memory in use (on GPUs: the most free memory).
 *
 * @module
 */

import type { DeviceAdvert, WorkerAdvert } from "./protocol.ts";

/** What placement needs to know of a device. */
export type DeviceLoad = Pick<DeviceAdvert, "slots" | "used" | "queue" | "bytesInUse">;

/** Free stream slots of a device (never negative). */
export function freeSlots(d: Pick<DeviceAdvert, "slots" | "used">): number {
  return Math.max(0, d.slots - d.used);
}

/** Orders two loads: negative when `a` should be chosen before `b`. */
function compareLoad(
  a: { free: number; queue: number; bytes: number },
  b: { free: number; queue: number; bytes: number },
): number {
  return b.free - a.free || a.queue - b.queue || a.bytes - b.bytes;
}

/** Index of the device a new stream goes to, or -1 when every device is full. */
export function pickDevice(devices: readonly DeviceLoad[]): number {
  let best = -1;
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i]!;
    if (freeSlots(d) === 0) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const b = devices[best]!;
    const cmp = compareLoad(
      { free: freeSlots(d), queue: d.queue, bytes: d.bytesInUse },
      { free: freeSlots(b), queue: b.queue, bytes: b.bytesInUse },
    );
    if (cmp < 0) best = i;
  }
  return best;
}

/** A worker's totals over its devices. */
export function workerLoad(w: WorkerAdvert): { free: number; queue: number; bytes: number } {
  let free = 0, queue = 0, bytes = 0;
  for (const d of w.devices) {
    free += freeSlots(d);
    queue += d.queue;
    bytes += d.bytesInUse;
  }
  return { free, queue, bytes };
}

/**
 * Workers to try for a new session, best first: not draining, with a free slot, ordered by free
 * slots (most first), then queue depth, then memory in use. `exclude` drops workers (e.g. the
 * one that just died).
 */
export function rankWorkers(workers: Iterable<WorkerAdvert>, exclude: ReadonlySet<string> = new Set()): WorkerAdvert[] {
  const open = [...workers].filter((w) => !w.draining && !exclude.has(w.id) && workerLoad(w).free > 0);
  return open.sort((a, b) => compareLoad(workerLoad(a), workerLoad(b)) || (a.id < b.id ? -1 : 1));
}
