/**
 * Placement without NATS: the pure rules (device and worker ranking), `--devices` parsing, and a
 * device pool of two CPU engines in one process standing in for two GPUs (streams go to the
 * device with the most free slots, then the least memory in use, read from the real engines).
 */

import assert from "node:assert/strict";
import { DevicePool, parseDevices, SerialQueue } from "../cluster/devices.ts";
import { pickDevice, rankWorkers } from "../cluster/placement.ts";
import type { DeviceAdvert, WorkerAdvert } from "../cluster/protocol.ts";
import { WorkerRegistry } from "../cluster/registry.ts";

const dev = (name: string, slots: number, used: number, queue = 0, bytesInUse = 0): DeviceAdvert => ({
  name,
  slots,
  used,
  fps: 0,
  queue,
  bytesInUse,
});
const worker = (id: string, devices: DeviceAdvert[], draining = false): WorkerAdvert => ({
  id,
  host: "h",
  draining,
  width: 64,
  height: 64,
  synthetic: true,
  notice: null,
  devices,
  heartbeatMs: 1000,
});

Deno.test("placement: a device with more free slots wins, then a shorter queue, then less memory", () => {
  assert.equal(pickDevice([dev("a", 4, 3), dev("b", 4, 1)]), 1);
  assert.equal(pickDevice([dev("a", 4, 1, 5), dev("b", 4, 1, 2)]), 1);
  assert.equal(pickDevice([dev("a", 4, 1, 0, 900), dev("b", 4, 1, 0, 100)]), 1);
  assert.equal(pickDevice([dev("a", 4, 1, 0, 100), dev("b", 4, 1, 0, 100)]), 0, "ties keep the first");
  assert.equal(pickDevice([dev("a", 2, 2), dev("b", 1, 1)]), -1, "all full");
  assert.equal(pickDevice([]), -1);
});

Deno.test("placement: workers ranked by free slots over their devices; full and draining ones left out", () => {
  const ws = [
    worker("full", [dev("cuda:0", 2, 2)]),
    worker("two", [dev("cuda:0", 4, 3), dev("cuda:1", 4, 3)]),
    worker("five", [dev("cuda:0", 4, 1), dev("cuda:1", 4, 2)]),
    worker("drain", [dev("cuda:0", 8, 0)], true),
  ];
  assert.deepEqual(rankWorkers(ws).map((w) => w.id), ["five", "two"]);
  assert.deepEqual(rankWorkers(ws, new Set(["five"])).map((w) => w.id), ["two"]);
});

Deno.test("placement: the registry expires silent workers, not during a NATS outage, and counts reservations", () => {
  const expired: string[] = [];
  const reg = new WorkerRegistry((id) => expired.push(id), 3);
  reg.update(worker("a", [dev("cpu", 2, 0)]), 0);
  reg.update(worker("b", [dev("cpu", 2, 0)]), 0);
  reg.update({ id: 7 } as unknown as WorkerAdvert, 0); // malformed: ignored
  assert.equal(reg.all().length, 2);
  const release = reg.reserve("a");
  assert.equal(reg.all().find((w) => w.id === "a")!.devices[0]!.used, 1, "a reserved slot counts as used");
  release();
  release(); // idempotent
  assert.equal(reg.all().find((w) => w.id === "a")!.devices[0]!.used, 0);
  reg.update(worker("b", [dev("cpu", 2, 0)]), 2500);
  reg.sweep(3500); // a: silent 3.5 s > 3 x 1 s
  assert.deepEqual(expired, ["a"]);
  reg.disconnected();
  reg.sweep(60_000);
  assert.deepEqual(expired, ["a"], "nothing expires while the gateway itself is cut off");
  reg.reconnected(60_000);
  reg.sweep(62_000);
  assert.ok(reg.has("b"), "a fresh period after the reconnect");
  reg.sweep(63_500);
  assert.deepEqual(expired, ["a", "b"]);
});

Deno.test("placement: --devices lists", () => {
  assert.deepEqual(parseDevices("cpu,cpu"), [{ backend: "cpu", index: 0 }, { backend: "cpu", index: 0 }]);
  assert.deepEqual(parseDevices("cuda"), [{ backend: "cuda", index: 0 }]);
  assert.deepEqual(parseDevices("cuda:2, cuda:0-1").map((d) => d.index), [2, 0, 1]);
  for (const bad of ["", "gpu", "cuda:3-1", "cuda:x", "cuda:0-99"]) {
    assert.throws(() => parseDevices(bad), RangeError, bad);
  }
});

Deno.test("placement: two CPU engines in one pool stand in for two GPUs", async () => {
  const pool = await DevicePool.load(parseDevices("cpu,cpu"), { slotsPerDevice: 2, threads: 1 });
  try {
    assert.deepEqual(pool.devices.map((d) => d.name), ["cpu:0", "cpu:1"]);
    const a = pool.acquire()!;
    assert.equal(a.name, "cpu:0");
    const before = a.host.stats().bytes_in_use;
    const stream = await a.host.createStream({ prompt: "a", width: 64, height: 64, seed: 1 });
    assert.ok(a.host.stats().bytes_in_use > before, "the stream's memory is on its device");
    assert.equal(pool.acquire()!.name, "cpu:1", "the freer device");
    // Both devices have one slot used; cpu:0 holds a real stream's memory, so cpu:1 wins.
    assert.ok(pool.devices[0]!.advert().bytesInUse > pool.devices[1]!.advert().bytesInUse);
    assert.equal(pool.acquire()!.name, "cpu:1", "the device with less memory in use");
    assert.equal(pool.acquire()!.name, "cpu:0");
    assert.equal(pool.acquire(), null, "every slot taken");
    assert.equal(pool.free(), 0);
    pool.release(a);
    assert.equal(pool.free(), 1);
    stream.close();
  } finally {
    pool.close();
  }
});

Deno.test("placement: a device queue runs one call at a time, FIFO, urgent calls first", async () => {
  const q = new SerialQueue();
  const order: string[] = [];
  let running = 0, maxRunning = 0;
  const call = (name: string, ms: number) => async () => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await new Promise((r) => setTimeout(r, ms));
    order.push(name);
    running--;
    return name;
  };
  const all = [
    q.run(call("a", 20)),
    q.run(call("b", 5)),
    q.run(call("c", 5)),
    q.run(call("u1", 1), true),
    q.run(call("u2", 1), true),
    q.run(() => Promise.reject(new Error("boom"))).catch((e) => e.message),
    q.run(call("d", 1)),
  ];
  assert.equal(q.waiting, 7);
  const results = await Promise.all(all);
  assert.deepEqual(
    order,
    ["a", "u1", "u2", "b", "c", "d"],
    "urgent calls overtake waiting normal ones, not the running one",
  );
  assert.equal(results[5], "boom", "a failing call rejects its own promise only");
  assert.equal(maxRunning, 1);
  assert.equal(q.waiting, 0);
});
