/**
 * Measures the cluster's transport on this machine with the echo stand-in engine (outputs are the
 * inputs; the CPU engine is far too slow at 512x512 to show a transport cost):
 *
 * 1. the latency a gateway hop adds per frame (p50/p99), 512x512 JPEG and raw RGB: a client sends
 *    a frame, waits for its output, sends the next; once straight to the single-machine server
 *    (examples/server/app.ts, which is also what "hand the browser a worker's address" costs) and
 *    once through gateway -> NATS -> worker -> NATS -> gateway;
 * 2. frames per second one gateway relays (several clients, each keeping frames in flight);
 * 3. the time from a worker's SIGKILL to the first frame from its replacement (detection +
 *    re-placement; a real engine adds its warm-up: see tests/cluster_fault_test.ts).
 *
 * `deno run -A cluster/bench.ts [--frames 200] [--clients 8] [--seconds 10]` (needs nats-server).
 *
 * @module
 */

import { parseArgs } from "node:util";
// deno-lint-ignore no-import-prefix
import jpeg from "npm:jpeg-js@0.4.4";
import type { Engine } from "../mod.ts";
import { createLive2DiffServer } from "../examples/server/app.ts";
import { EchoHost } from "./echo.ts";
import { KIND } from "./protocol.ts";
import { encodeOutput } from "./codec.ts";
import { type Child, spawnGateway, spawnWorker, startNats } from "../tests/_fixtures/cluster_harness.ts";

const SIZE = 512;

/** A test image: smooth gradients plus noise (JPEG size like a webcam frame's). */
function testImage(): Uint8Array {
  const rgb = new Uint8Array(SIZE * SIZE * 3);
  let s = 12345;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const n = (s >>> 24) & 15;
      rgb.set([(x >> 1) + n, (y >> 1) + n, ((x + y) >> 2) + n], (y * SIZE + x) * 3);
    }
  }
  return rgb;
}

function toJpeg(rgb: Uint8Array): Uint8Array {
  const rgba = new Uint8Array(SIZE * SIZE * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) rgba.set([rgb[i]!, rgb[i + 1]!, rgb[i + 2]!, 255], j);
  return new Uint8Array(jpeg.encode({ data: rgba, width: SIZE, height: SIZE }, 80).data);
}

/** Opens a client socket, starts a stream and resolves once it is ready (with the worker's id). */
async function openClient(url: string, format: "raw" | "jpeg"): Promise<WebSocket & { worker?: string }> {
  const ws: WebSocket & { worker?: string } = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise<void>((resolve, reject) => {
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", prompt: "bench", format }));
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return;
      const m = JSON.parse(e.data);
      if (m.type === "ready") {
        ws.worker = m.worker;
        resolve();
      }
      if (m.type === "error") reject(new Error(`${m.code}: ${m.message}`));
    };
  });
  return ws;
}

/** Round trips of `n` frames, one at a time (ms each). */
async function roundTrips(url: string, kind: number, payload: Uint8Array, n: number, side = SIZE): Promise<number[]> {
  const ws = await openClient(url, kind === KIND.JPEG ? "jpeg" : "raw");
  const times: number[] = [];
  let wake: ((t: number) => void) | null = null, fail: ((e: Error) => void) | null = null;
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") return wake?.(performance.now());
    const m = JSON.parse(e.data);
    if (m.type === "error") fail?.(new Error(`${url}: ${m.code}: ${m.message}`));
  };
  for (let i = 0; i < n + 10; i++) { // 10 unmeasured to warm the JITs and sockets
    const got = new Promise<number>((resolve, reject) => {
      wake = resolve;
      fail = reject;
      setTimeout(() => reject(new Error(`${url}: no answer to frame ${i + 1} in 20 s`)), 20_000);
    });
    const t0 = performance.now();
    ws.send(encodeOutput(kind, side, side, payload, i + 1, 0, 0));
    const t1 = await got;
    if (i >= 10) times.push(t1 - t0);
  }
  ws.close();
  return times;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

/** Outputs per second over `seconds` with `clients` clients, each keeping 2 frames in flight. */
async function throughput(url: string, clients: number, seconds: number, payload: Uint8Array): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: clients }, () => openClient(url, "raw")));
  let outputs = 0, running = true;
  const side = Math.round(Math.sqrt(payload.byteLength / 3));
  for (const ws of sockets) {
    let seq = 0;
    const sendOne = () => running && ws.send(encodeOutput(KIND.RGB, side, side, payload, ++seq, 0, 0));
    ws.onmessage = (e) => {
      if (typeof e.data === "string") return;
      outputs++;
      sendOne();
    };
    sendOne();
    sendOne();
  }
  await new Promise((r) => setTimeout(r, 1000)); // ramp up
  const start = outputs, t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const fps = (outputs - start) / ((performance.now() - t0) / 1000);
  running = false;
  for (const ws of sockets) ws.close();
  return fps;
}

/** Serves the single-machine server with the echo stand-in on a free port (runs in its own process). */
function serveDirect() {
  const server = createLive2DiffServer({
    engine: new EchoHost() as unknown as Engine, // duck-typed: createStream/device/synthetic/notice
    width: SIZE,
    height: SIZE,
    maxClients: 64,
    maxMessagesPerSecond: 100_000,
  });
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`live2diff gateway direct: http://127.0.0.1:${port}/`),
  }, server.app.fetch);
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      frames: { type: "string", default: "200" },
      clients: { type: "string", default: "8" },
      seconds: { type: "string", default: "10" },
      "serve-direct": { type: "boolean", default: false },
    },
  });
  if (values["serve-direct"]) return serveDirect();
  const frames = Number(values.frames), clients = Number(values.clients), seconds = Number(values.seconds);
  const rgb = testImage(), jpg = toJpeg(rgb);
  const nats = await startNats(1);
  const children: Child[] = [];
  try {
    const direct = new (await import("../tests/_fixtures/cluster_harness.ts")).Child(
      "direct",
      Deno.execPath(),
      ["run", "-A", new URL(import.meta.url).pathname, "--serve-direct"],
    );
    children.push(direct);
    const directPort = Number((await direct.waitFor(/direct: http:\/\/[^:]+:(\d+)\//))[1]);
    const workerArgs = (id: string) => [
      "--nats",
      nats.urls[0]!,
      "--engine",
      "echo",
      "--devices",
      "cpu",
      "--slots",
      "64",
      "--size",
      String(SIZE),
      "--id",
      id,
      "--quiet",
    ];
    const w1 = await spawnWorker("w1", workerArgs("w1"));
    children.push(w1);
    const gw = await spawnGateway("g1", ["--nats", nats.urls[0]!, "--keep-ms", "300", "--quiet"]);
    children.push(gw.child);
    await new Promise((r) => setTimeout(r, 500));
    const directUrl = `ws://127.0.0.1:${directPort}/ws`, gatewayUrl = `ws://127.0.0.1:${gw.port}/ws`;
    /** Waits until the gateway knows `n` workers (a loaded machine can delay heartbeats). */
    const workersKnown = async (n: number) => {
      for (let i = 0; i < 100; i++) {
        if ((await (await fetch(`http://127.0.0.1:${gw.port}/health`)).json()).workers >= n) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`the gateway does not see ${n} workers`);
    };

    console.log(
      `Machine: ${navigator.hardwareConcurrency} cores, load ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`,
    );
    console.log(
      `JPEG input ${(jpg.byteLength / 1024).toFixed(0)} KiB, raw RGB ${(rgb.byteLength / 1024).toFixed(0)} KiB`,
    );
    // JPEG end to end includes jpeg-js decoding and encoding 512x512 on the worker (or server), which
    // dwarfs the hop; a raw frame as large as the JPEG (152x152 RGB, 68 KiB) shows what moving the
    // JPEG's bytes costs.
    const jpegSized = rgb.subarray(0, 152 * 152 * 3);
    const cases = [
      ["JPEG 512x512 (codec included)", KIND.JPEG, jpg, SIZE],
      ["raw RGB 152x152 (the JPEG's bytes)", KIND.RGB, jpegSized, 152],
      ["raw RGB 512x512", KIND.RGB, rgb, SIZE],
    ] as const;
    for (const [name, kind, payload, side] of cases) {
      const d = await roundTrips(directUrl, kind, payload, frames, side);
      await workersKnown(1);
      const g = await roundTrips(gatewayUrl, kind, payload, frames, side);
      console.log(
        `${name} round trip (ms): direct p50 ${pct(d, 0.5).toFixed(2)} p99 ${pct(d, 0.99).toFixed(2)}; ` +
          `via gateway+NATS p50 ${pct(g, 0.5).toFixed(2)} p99 ${pct(g, 0.99).toFixed(2)}; ` +
          `added p50 ${(pct(g, 0.5) - pct(d, 0.5)).toFixed(2)} p99 ${(pct(g, 0.99) - pct(d, 0.99)).toFixed(2)}`,
      );
    }
    const small = new Uint8Array(64 * 64 * 3).fill(7);
    for (const [name, payload] of [["raw 512x512", rgb], ["raw 64x64", small]] as const) {
      await workersKnown(1);
      const fps = await throughput(gatewayUrl, clients, seconds, payload);
      console.log(`one gateway relays ${fps.toFixed(0)} frames/s (${name}, ${clients} clients, echo worker)`);
    }

    // Worker death -> first frame from the replacement (echo: no warm-up).
    const w2 = await spawnWorker("w2", workerArgs("w2"));
    children.push(w2);
    await workersKnown(2);
    const ws = await openClient(gatewayUrl, "raw");
    let tKill = Infinity, replaced = false, firstAfter = 0, seq = 0;
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        if (JSON.parse(e.data).type === "ready" && performance.now() > tKill) replaced = true;
      } else if (replaced && !firstAfter) firstAfter = performance.now();
    };
    const timer = setInterval(() => ws.send(encodeOutput(KIND.RGB, 64, 64, small, ++seq, 0, 0)), 20);
    await new Promise((r) => setTimeout(r, 300));
    tKill = performance.now();
    (ws.worker === "w1" ? w1 : w2).kill("SIGKILL");
    while (!firstAfter) {
      await new Promise((r) => setTimeout(r, 10));
      if (performance.now() - tKill > 30_000) throw new Error("no frame after the worker's death");
    }
    clearInterval(timer);
    ws.close();
    console.log(
      `worker SIGKILL -> first frame from its replacement: ${(firstAfter - tKill).toFixed(0)} ms ` +
        `(heartbeat 1 s, dead after 3 missed; echo engine, so no warm-up)`,
    );
  } finally {
    for (const c of children) await c.stop();
    await nats.stop();
  }
}

if (import.meta.main) await main();
