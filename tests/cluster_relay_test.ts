/**
 * The cluster's relay against a real `nats-server` (one node), with workers and a gateway in this
 * process on the echo stand-in (outputs are the inputs, so what each client gets back can be
 * checked byte for byte): isolation between clients, placement over workers and devices,
 * latest-frame-wins on every hop, SERVER_FULL with a retry hint, bad frames stopped at the
 * gateway, a drained worker's sessions moving to another one, and the page's own protocol module
 * (page_session.js) streaming on through a rewarm and a resume.
 */

import assert from "node:assert/strict";
import type { Frame } from "../mod.ts";
import { Device, DevicePool, type LiveStream, type LiveStreamOptions, type StreamHost } from "../cluster/devices.ts";
import { EchoHost } from "../cluster/echo.ts";
import { createGateway, FRAMES_IN_FLIGHT, type Gateway } from "../cluster/gateway.ts";
import { createWorker, type Worker } from "../cluster/worker.ts";
import { KIND } from "../cluster/protocol.ts";
import { hasNatsServer, NATS_HINT, type NatsCluster, startNats } from "./_fixtures/cluster_harness.ts";
import { encodeFrame, TestClient } from "./_fixtures/examples_ws_client.ts";
import {
  createPageSession,
  mayCapture,
  onConnectionClosed,
  onServerMessage,
  startMessage,
} from "../examples/server/public/page_session.js";
// deno-lint-ignore no-import-prefix
import jpeg from "npm:jpeg-js@0.4.4";

const natsPresent = await hasNatsServer();
if (!natsPresent) console.warn(`cluster relay tests ignored: ${NATS_HINT}`);
const SIZE = 64;
const START = { type: "start", prompt: "p", format: "raw" };

/** An echo stand-in whose pushes take `ms` (a slow GPU), counting pushes. */
class SlowEcho implements StreamHost {
  readonly device = "slow-echo";
  readonly synthetic = true;
  readonly notice = null;
  pushes = 0;
  readonly #echo = new EchoHost();
  constructor(readonly ms: number) {}
  async createStream(options: LiveStreamOptions): Promise<LiveStream> {
    const inner = await this.#echo.createStream(options);
    return {
      width: inner.width,
      height: inner.height,
      latency: 0,
      push: async (frame: Frame) => {
        this.pushes++;
        await new Promise((r) => setTimeout(r, this.ms));
        return inner.push(frame);
      },
      setPrompt: (p) => inner.setPrompt(p),
      close: () => inner.close(),
    };
  }
  stats() {
    return { bytes_in_use: 0 };
  }
  close() {}
}

interface Setup {
  nats: NatsCluster;
  workers: Worker[];
  gateway: Gateway;
  url: string;
}

/** Runs `fn` with a 1-node NATS, workers (one pool each) and a gateway served on loopback. */
async function withCluster(pools: DevicePool[], fn: (s: Setup) => Promise<void>, maxPayload?: string) {
  const nats = await startNats(1, { maxPayload });
  const workers: Worker[] = [];
  let gateway: Gateway | null = null;
  const ac = new AbortController();
  let http: Deno.HttpServer | null = null;
  try {
    for (const [i, pool] of pools.entries()) {
      workers.push(
        await createWorker({ nats: nats.urls, pool, width: SIZE, height: SIZE, id: `w${i}-test`, heartbeatMs: 200 }),
      );
    }
    gateway = await createGateway({ nats: nats.urls, keepMs: 200, retryAfterMs: 1500 });
    const g = gateway;
    const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
    http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: resolve }, g.app.fetch);
    const addr = await promise;
    // Every worker known (heartbeats) before clients come.
    const deadline = Date.now() + 5000;
    while (g.workers().length < pools.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(g.workers().length, pools.length, "the gateway learnt every worker from heartbeats");
    await fn({ nats, workers, gateway: g, url: `ws://127.0.0.1:${addr.port}/ws` });
  } finally {
    await gateway?.close();
    ac.abort();
    await http?.finished;
    for (const w of workers) await w.close();
    await nats.stop();
  }
}

const echoPool = (devices: number, slots: number) =>
  new DevicePool(Array.from({ length: devices }, (_, i) => new Device(`echo:${i}`, new EchoHost(), slots)));

/** A raw RGB frame of one colour. */
function solidRgb(rgb: [number, number, number]): Uint8Array {
  const data = new Uint8Array(SIZE * SIZE * 3);
  for (let i = 0; i < data.length; i += 3) data.set(rgb, i);
  return data;
}

const opts = { ignore: !natsPresent, sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "cluster relay: 6 clients on 2 workers x 2 devices get exactly their own frames back",
  ...opts,
  fn: () =>
    withCluster([echoPool(2, 2), echoPool(2, 2)], async ({ url, gateway, workers }) => {
      const clients = Array.from({ length: 6 }, () => new TestClient(url));
      await Promise.all(clients.map((c) => c.message("hello")));
      for (const c of clients) c.sendJson(START);
      const ready = await Promise.all(clients.map((c) => c.message("ready")));
      // Least-loaded placement: 6 sessions over 2 workers x 2 devices (2 slots each) -> 3 + 3, no device above 2.
      const perWorker = new Map<string, number>(), perDevice = new Map<string, number>();
      for (const r of ready) {
        perWorker.set(String(r.worker), (perWorker.get(String(r.worker)) ?? 0) + 1);
        const key = `${r.worker}/${r.device}`;
        perDevice.set(key, (perDevice.get(key) ?? 0) + 1);
      }
      assert.deepEqual([...perWorker.values()].sort(), [3, 3]);
      assert.ok([...perDevice.values()].every((n) => n <= 2) && perDevice.size === 4, JSON.stringify([...perDevice]));

      // Each client sends its own colour with its own seq range; every output must be its own.
      const colour = (i: number): [number, number, number] => [10 + i * 30, 200 - i * 20, i * 7];
      for (let n = 1; n <= 5; n++) {
        for (const [i, c] of clients.entries()) {
          c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, i * 1000 + n, solidRgb(colour(i))));
        }
        await Promise.all(
          clients.map((c, i) => c.until(() => c.acked === i * 1000 + n, `frame ${n} of client ${i}`, 5000)),
        );
      }
      for (const [i, c] of clients.entries()) {
        assert.equal(c.frames.length, 5, `client ${i} got every frame back`);
        for (const f of c.frames) {
          assert.ok(f.seq >= i * 1000 + 1 && f.seq <= i * 1000 + 5, `client ${i} got seq ${f.seq}`);
          assert.equal(f.kind, KIND.RGB);
          assert.deepEqual(f.payload, solidRgb(colour(i)), `client ${i} got its own pixels`);
        }
      }
      const m = gateway.metrics();
      assert.equal(m.framesReceived, 30);
      assert.equal(m.framesOut, 30);

      // The single-machine server's page, and metrics of both kinds of node.
      const page = await gateway.app.request("/");
      assert.match(await page.text(), /id="video"/);
      assert.match((await gateway.app.request("/app.js")).headers.get("content-type") ?? "", /javascript/);
      const health = await (await gateway.app.request("/health")).json();
      assert.equal(health.placed, 6);
      assert.equal(health.workers, 2);
      assert.equal(health.freeSlots, 2);
      const text = await (await gateway.app.request("/metrics")).text();
      assert.match(text, /^live2diff_gateway_frames_out_total 30$/m);
      const w = workers.map((x) => x.fetch(new Request("http://w/metrics")));
      const wText = (await Promise.all(w.map((r) => r.text()))).join("");
      assert.equal(
        [...wText.matchAll(/^live2diff_worker_frames_out_total (\d+)$/gm)].reduce((a, x) => a + Number(x[1]), 0),
        30,
      );
      assert.match(wText, /^live2diff_device_slots_used\{device="echo:1"\} \d$/m);
      await Promise.all(clients.map((c) => c.close()));
    }),
});

Deno.test({
  name: "cluster relay: latest frame wins on every hop under a flood (bounded queues, frames dropped)",
  ...opts,
  fn: async () => {
    const slow = new SlowEcho(50);
    await withCluster([new DevicePool([new Device("slow", slow, 2)])], async ({ url, gateway, workers }) => {
      const c = new TestClient(url);
      await c.message("hello");
      c.sendJson(START);
      await c.message("ready");
      let maxPending = 0, maxInFlight = 0;
      for (let n = 1; n <= 100; n++) {
        c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, n, solidRgb([n, n, n])));
        const m = gateway.metrics();
        maxPending = Math.max(maxPending, m.maxPendingPerClient);
        maxInFlight = Math.max(maxInFlight, m.maxInFlightPerClient);
        if (n % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      await c.until(() => c.acked === 100, "the last frame to be processed", 10_000);
      assert.ok(maxPending <= 1 && maxInFlight <= FRAMES_IN_FLIGHT, `pending ${maxPending}, in flight ${maxInFlight}`);
      const m = gateway.metrics();
      const w = workers[0]!.metrics();
      assert.equal(m.framesReceived, 100);
      assert.ok(m.framesDropped > 50, `the gateway dropped ${m.framesDropped} stale frames`);
      assert.equal(m.framesRelayed + m.framesDropped, 100, "every frame was relayed or replaced, none queued");
      assert.equal(slow.pushes, w.framesProcessed);
      assert.ok(slow.pushes < 40, `the engine ran ${slow.pushes} pushes, not one per frame sent`);
      assert.equal(c.frames.at(-1)!.payload[0], 100, "the newest frame came out last");
      await c.close();
    });
  },
});

Deno.test({
  name: "cluster relay: all workers full -> SERVER_FULL with a retry hint; a freed slot takes the retry",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 1), echoPool(1, 1)], async ({ url }) => {
      const a = new TestClient(url), b = new TestClient(url), c = new TestClient(url);
      for (const x of [a, b]) {
        await x.message("hello");
        x.sendJson(START);
        await x.message("ready");
      }
      await c.message("hello");
      c.sendJson(START);
      const full = await c.error("SERVER_FULL");
      assert.equal(full.retryAfterMs, 1500);
      assert.match(String(full.message), /full/);
      await a.close();
      await new Promise((r) => setTimeout(r, 600)); // the worker's heartbeat shows the free slot
      c.sendJson(START);
      const ready = await c.message("ready");
      assert.equal(ready.width, SIZE);
      c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 7, solidRgb([1, 2, 3])));
      await c.until(() => c.frames.length === 1, "an output after the retry", 5000);
      await Promise.all([b.close(), c.close()]);
    }),
});

Deno.test({
  name: "cluster relay: bad messages and frames are refused at the gateway with typed errors",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 2)], async ({ url, workers }) => {
      const c = new TestClient(url);
      const hello = await c.message("hello");
      assert.equal(hello.width, SIZE);
      assert.equal(hello.maxFrameBytes, 4 * 1024 * 1024, "min(4 MiB, the server's 8 MB max_payload)");
      c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 1, solidRgb([1, 1, 1])));
      await c.error("NOT_STARTED");
      c.sendJson({ type: "start", strength: 2 });
      await c.until(() => c.json.some((m) => m.code === "BAD_MESSAGE"), "BAD_MESSAGE");
      c.sendJson(START);
      await c.message("ready");
      c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 2, new Uint8Array(10)));
      c.ws.send(encodeFrame(9, SIZE, SIZE, 3, new Uint8Array(10)));
      c.ws.send(new Uint8Array(5 * 1024 * 1024));
      c.ws.send("not json");
      await c.until(() => c.json.filter((m) => m.type === "error").length >= 6, "six errors");
      const codes = c.json.filter((m) => m.type === "error").map((m) => m.code);
      assert.deepEqual(codes, [
        "NOT_STARTED",
        "BAD_MESSAGE",
        "BAD_FRAME",
        "BAD_FRAME",
        "FRAME_TOO_LARGE",
        "BAD_MESSAGE",
      ]);
      // Errors about a frame with a readable header carry its seq (a self-clocked page sends the next one).
      const seqs = c.json.filter((m) => m.type === "error").map((m) => m.seq);
      assert.deepEqual(seqs, [1, undefined, 2, 3, undefined, undefined]);
      assert.equal(workers[0]!.metrics().framesReceived, 0, "no bad frame reached the worker");
      // A bad JPEG passes the header checks and is refused by the worker, still with a typed error.
      c.ws.send(encodeFrame(KIND.JPEG, SIZE, SIZE, 4, new Uint8Array([1, 2, 3])));
      await c.until(() => c.json.filter((m) => m.type === "error").length >= 7, "the JPEG error");
      assert.equal(c.json.at(-1)!.code, "BAD_FRAME");
      await c.close();
    }),
});

Deno.test({
  name: "cluster relay: a draining worker takes no new sessions and moves its running ones",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 4), echoPool(1, 4)], async ({ url, workers }) => {
      const c = new TestClient(url);
      await c.message("hello");
      c.sendJson(START);
      const first = await c.message("ready");
      const from = workers.find((w) => w.id === first.worker)!;
      const to = workers.find((w) => w !== from)!;
      const draining = from.drain(); // drainMs defaults to 30 s; the session is told to move at close
      await new Promise((r) => setTimeout(r, 100));
      const d = new TestClient(url);
      await d.message("hello");
      d.sendJson(START);
      assert.equal((await d.message("ready")).worker, to.id, "new sessions avoid the draining worker");
      await from.close(); // grace period over: remaining sessions move
      await draining;
      await c.message("rewarming");
      await c.until(() => c.json.filter((m) => m.type === "ready").length === 2, "ready on the new worker");
      assert.equal(c.json.filter((m) => m.type === "ready")[1]!.worker, to.id, "moved to the other worker");
      c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 11, solidRgb([9, 9, 9])));
      await c.until(() => c.frames.length === 1, "an output from the new worker", 5000);
      await Promise.all([c.close(), d.close()]);
    }),
});

Deno.test({
  name: "cluster relay: a client resumes its session from a new connection; the old connection's end does not close it",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 2)], async ({ url, workers }) => {
      const a = new TestClient(url);
      const hello = await a.message("hello");
      a.sendJson(START);
      await a.message("ready");
      a.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 1, solidRgb([5, 5, 5])));
      await a.until(() => a.frames.length === 1, "a's output");

      const b = new TestClient(url); // e.g. after a network change, before the old socket timed out
      await b.message("hello");
      b.sendJson({ ...START, resume: hello.id });
      const resumed = await b.message("resumed");
      assert.equal(resumed.id, hello.id);
      await a.close(); // the old connection ends: its gateway sends a close the worker must ignore
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(workers[0]!.metrics().sessions, 1, "the session lives on");
      assert.equal(workers[0]!.metrics().sessionsOpened, 1, "no new session: no new warm-up");
      b.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 2, solidRgb([6, 6, 6])));
      await b.until(() => b.frames.length === 1, "b's output on the resumed session");
      assert.equal(b.frames[0]!.payload[0], 6);

      const c = new TestClient(url);
      await c.message("hello");
      c.sendJson({ ...START, resume: "00000000-0000-0000-0000-000000000000" });
      await c.message("ready"); // an unknown id starts a new session
      assert.ok(!c.json.some((m) => m.type === "resumed"));
      await Promise.all([b.close(), c.close()]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(workers[0]!.metrics().sessions, 0, "closing the owners ends the sessions");
    }),
});

Deno.test({
  name: "cluster relay: frames and outputs over the NATS max_payload get FRAME_TOO_LARGE, not silence",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 1)], async ({ url }) => {
      const c = new TestClient(url);
      const hello = await c.message("hello");
      assert.equal(hello.maxFrameBytes, 64 * 1024, "the server's max_payload");
      c.sendJson(START);
      await c.message("ready");
      const side = 160; // raw RGB: 76800 bytes, over 64 KiB
      c.ws.send(encodeFrame(KIND.RGB, side, side, 1, new Uint8Array(side * side * 3)));
      await c.error("FRAME_TOO_LARGE");
      // A small JPEG passes; its raw output would not fit through NATS.
      const rgba = new Uint8Array(side * side * 4).fill(200);
      const small = new Uint8Array(jpeg.encode({ data: rgba, width: side, height: side }, 80).data);
      assert.ok(small.byteLength < 8 * 1024);
      c.ws.send(encodeFrame(KIND.JPEG, side, side, 2, small));
      await c.until(() => c.json.filter((m) => m.code === "FRAME_TOO_LARGE").length === 2, "the output error");
      const err = c.json.filter((m) => m.code === "FRAME_TOO_LARGE")[1]!;
      assert.equal(err.seq, 2);
      assert.match(String(err.message), /max_payload/);
      // The window was given back: the next frame is served.
      c.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, 3, solidRgb([4, 4, 4])));
      await c.until(() => c.frames.length === 1, "the next output");
      await c.close();
    }, "64KB"),
});

/**
 * A client that makes every protocol decision with the webcam page's own module (page_session.js):
 * when to send "start" (and with `resume`), when the next frame may go out, when to reconnect.
 */
class PageDriver {
  readonly s = createPageSession();
  readonly json: Record<string, unknown>[] = [];
  outputs = 0;
  ws!: WebSocket;
  #timer: ReturnType<typeof setInterval>;
  constructor(readonly url: string) {
    this.#connect();
    this.#timer = setInterval(() => this.#capture(), 20);
  }
  #connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        this.s.acked = Math.max(this.s.acked, new DataView(e.data as ArrayBuffer).getUint32(12, true));
        this.outputs++;
        return;
      }
      const msg = JSON.parse(e.data);
      this.json.push(msg);
      const todo = onServerMessage(this.s, msg);
      if (todo.sendStart) ws.send(JSON.stringify(startMessage(this.s, { prompt: "p", format: "raw" })));
    };
    ws.onclose = (e) => this.#closed(e.code);
  }
  #closed(code: number) {
    const retry = onConnectionClosed(this.s, code);
    if (retry) setTimeout(() => this.#connect(), retry.reconnectMs);
  }
  #capture() {
    if (this.ws.readyState !== WebSocket.OPEN || !mayCapture(this.s)) return;
    this.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, ++this.s.seq, solidRgb([1, 2, 3])));
  }
  /**
   * The page loses its connection (an abnormal close, 1006) while the server side has not noticed
   * yet, as when the gateway died (it never closes the session then). Returns the old socket.
   */
  dropConnection(): WebSocket {
    const old = this.ws;
    old.onclose = old.onmessage = null;
    this.#closed(1006);
    return old;
  }
  count(type: string) {
    return this.json.filter((m) => m.type === type).length;
  }
  async until(pred: () => boolean, what: string, ms = 5000) {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(this.json)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  stop() {
    clearInterval(this.#timer);
    this.ws.onclose = null;
    this.ws.close();
  }
}

Deno.test({
  name: "cluster relay: the page's protocol module streams on by itself after a rewarm and after a lost connection",
  ...opts,
  fn: () =>
    withCluster([echoPool(1, 4), echoPool(1, 4)], async ({ url, workers }) => {
      const page = new PageDriver(url);
      try {
        await page.until(() => page.outputs >= 3, "outputs on the first worker");
        const first = page.json.find((m) => m.type === "ready")!;
        const from = workers.find((w) => w.id === first.worker)!;
        const to = workers.find((w) => w !== from)!;
        await from.close(); // its session moves: "rewarming", then "ready" on the other worker
        await page.until(() => page.count("rewarming") === 1 && page.count("ready") === 2, "rewarming, then ready");
        let before = page.outputs;
        await page.until(() => page.outputs >= before + 3, "outputs from the new worker, without any help");
        assert.equal(page.json.filter((m) => m.type === "ready")[1]!.worker, to.id);

        const session = page.s.id;
        const old = page.dropConnection(); // e.g. its gateway died: reconnect (here: the same gateway), resume
        await page.until(() => page.count("resumed") === 1, "resumed");
        old.close(); // the old connection's end does not close the resumed session
        assert.equal(page.json.find((m) => m.type === "resumed")!.id, session);
        before = page.outputs;
        await page.until(() => page.outputs >= before + 3, "outputs on the resumed session");
        assert.equal(to.metrics().sessionsOpened, 1, "resumed, not re-created: no new warm-up");
        assert.equal(page.s.id, session);
      } finally {
        page.stop();
      }
    }),
});
