/**
 * Soak test of the webcam demo server: `deno task soak [--minutes 60] [--clients 4] [--device cpu]
 * [--size 64] [--engine file.l2de] [--out results/soak] [--max-first-frame 600]`.
 *
 * Starts `examples/server/main.ts` as a child process and drives it like real users for the given
 * time: webcam-like clients (a moving, textured picture; half send raw RGBA, half JPEG; self-clocked
 * like the page), prompt changes every 30 s, reconnects every 2-4 minutes; every 3 minutes a flood
 * client (1000 frames unpaced, bad messages) and every 5 minutes a 20 s phase of Full-HD JPEGs plus
 * one JPEG bomb (refused). Every 5 s it samples the server's `/health` (RSS, FPS, counters) and
 * each client's outputs, writing `samples.csv`, then `summary.json` and one summary line with the
 * memory slope (MB per hour, least squares, over the whole run and its second half).
 *
 * Run it at low priority on a shared machine: `nice -n 10 deno task soak --minutes 60`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import jpeg from "jpeg-js";
import { HEADER_BYTES, KIND, PROTOCOL_VERSION } from "../examples/server/app.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "60" },
    clients: { type: "string", default: "4" },
    device: { type: "string", default: "cpu" },
    size: { type: "string" },
    engine: { type: "string" },
    out: { type: "string", default: "results/soak" },
    "max-first-frame": { type: "string", default: "600" },
    "sample-s": { type: "string", default: "5" },
  },
});
const minutes = Number(values.minutes), nClients = Number(values.clients), sampleS = Number(values["sample-s"]);
if (!(minutes > 0) || !Number.isInteger(nClients) || nClients < 1 || !(sampleS > 0)) {
  console.error("usage: deno task soak [--minutes N>0] [--clients N>=1] [--device cpu|cuda|auto] [--size 64]");
  Deno.exit(2);
}
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const outDir = `${values.out}/${stamp}`;
await Deno.mkdir(outDir, { recursive: true });

// ---- the server under test (a child process, so its RSS is its own) ----
const args = ["run", "-A", "examples/server/main.ts", "--port", "0", "--device", values.device];
// + the flood and big-JPEG clients; a generous first-frame budget so that all of them are admitted
// on a slow CPU (admission by engine cost is tested in tests/server_fairness_test.ts).
args.push("--max-clients", String(nClients + 2), "--max-first-frame", values["max-first-frame"]);
if (values.size) args.push("--size", values.size);
if (values.engine) args.push("--engine", values.engine);
// The server's log (joins, leaves, refusals, idle closes) goes to this process's stderr.
const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" }).spawn();
const port = await (async () => {
  const decoder = new TextDecoder();
  let text = "";
  const reader = child.stdout.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the server exited before listening:\n${text}`);
    text += decoder.decode(value);
    const m = text.match(/http:\/\/[^:]+:(\d+)\//);
    if (m) {
      reader.releaseLock();
      void child.stdout.pipeTo(new WritableStream()); // keep draining
      return Number(m[1]);
    }
  }
})();
const base = `127.0.0.1:${port}`;
const health = async () => await (await fetch(`http://${base}/health`)).json();
console.error(`soak: server on ${base}, ${minutes} min, ${nClients} clients, results in ${outDir}`);

const t0 = performance.now();
const end = t0 + minutes * 60_000;
const elapsedS = () => (performance.now() - t0) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Sleeps, but never past the end of the run. */
const nap = (ms: number) => sleep(Math.max(0, Math.min(ms, end - performance.now())));

/** A camera-like RGBA picture that moves with `t`. */
function picture(w: number, h: number, t: number): Uint8Array {
  const d = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      d[i] = (x * 255 / w + t * 3) & 255;
      d[i + 1] = (y * 255 / h) & 255;
      d[i + 2] = 128 + 60 * Math.sin((x + t) / 5) * Math.cos(y / 7);
      d[i + 3] = 255;
    }
  }
  return d;
}

function frameMessage(kind: number, w: number, h: number, seq: number, payload: Uint8Array): Uint8Array {
  const msg = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const v = new DataView(msg.buffer);
  v.setUint8(0, kind);
  v.setUint8(1, PROTOCOL_VERSION);
  v.setUint16(2, w, true);
  v.setUint16(4, h, true);
  v.setUint32(8, seq, true);
  msg.set(payload, HEADER_BYTES);
  return msg;
}

const jpegOf = (rgba: Uint8Array, w: number, h: number) =>
  new Uint8Array(jpeg.encode({ data: rgba, width: w, height: h }, 80).data);

/** Counters of every client of one kind. */
const stats = { sessions: 0, refused: 0, outputs: 0, errors: new Map<string, number>(), firstFrameS: [] as number[] };
const perClientOutputs = new Array<number>(nClients).fill(0);

/** One connection: hello, start, then `drive` until it returns; resolves when closed. */
async function session(
  name: string,
  start: Record<string, unknown>,
  drive: (
    ctx: { ws: WebSocket; width: number; height: number; acked: () => number; outputs: () => number },
  ) => Promise<void>,
  onOutput: () => void = () => {},
): Promise<void> {
  const ws = new WebSocket(`ws://${base}/ws`);
  ws.binaryType = "arraybuffer";
  let width = 0, height = 0, acked = 0, outputs = 0, ready = false, closed = false;
  const opened = performance.now();
  let firstFrame = true;
  const { promise: done, resolve } = Promise.withResolvers<void>();
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      const m = JSON.parse(e.data);
      if (m.type === "hello") {
        width = m.width;
        height = m.height;
        ws.send(JSON.stringify(start));
      } else if (m.type === "ready") ready = true;
      else if (m.type === "ack") acked = Math.max(acked, m.seq);
      else if (m.type === "error") {
        if (typeof m.seq === "number") acked = Math.max(acked, m.seq); // a refused frame is consumed
        if (m.code === "SERVER_FULL") stats.refused++;
        stats.errors.set(m.code, (stats.errors.get(m.code) ?? 0) + 1);
      }
    } else {
      const v = new DataView(e.data as ArrayBuffer);
      acked = Math.max(acked, v.getUint32(12, true));
      outputs++;
      stats.outputs++;
      onOutput();
      if (firstFrame) {
        firstFrame = false;
        stats.firstFrameS.push((performance.now() - opened) / 1000);
      }
    }
  };
  ws.onclose = () => {
    closed = true;
    resolve();
  };
  ws.onerror = () => {};
  stats.sessions++;
  const deadline = performance.now() + 120_000;
  while (!ready && !closed && performance.now() < deadline) await sleep(20);
  if (ready && !closed) {
    try {
      await drive({ ws, width, height, acked: () => acked, outputs: () => outputs });
    } catch (e) {
      console.error(`soak: ${name}: ${e instanceof Error ? e.message : e}`);
    }
  }
  if (!closed) ws.close();
  await done;
}

/** Sends frames self-clocked (next one when the previous was consumed), like the page. */
async function streamUntil(
  ctx: { ws: WebSocket; width: number; height: number; acked: () => number },
  until: number,
  frame: (seq: number) => Uint8Array,
  onTick: () => void = () => {},
) {
  let seq = 0;
  while (performance.now() < until && ctx.ws.readyState === WebSocket.OPEN) {
    if (ctx.acked() >= seq) ctx.ws.send(frame(++seq));
    onTick();
    await sleep(10);
  }
}

async function webcamClient(i: number) {
  const useJpeg = i % 2 === 1;
  const prompts = ["a watercolor painting", "an oil painting of a fox", "a pencil sketch", "neon city at night"];
  while (performance.now() < end) {
    const sessionEnd = Math.min(end, performance.now() + (120 + Math.random() * 120) * 1000);
    await session(`client ${i}`, {
      type: "start",
      prompt: prompts[i % prompts.length],
      seed: i,
      steps: 2,
      strength: 0.5,
      format: useJpeg ? "jpeg" : "raw",
    }, async (ctx) => {
      let nextPrompt = performance.now() + 30_000, p = i;
      await streamUntil(ctx, sessionEnd, (seq) => {
        const rgba = picture(ctx.width, ctx.height, seq + i * 7);
        return useJpeg
          ? frameMessage(KIND.JPEG, ctx.width, ctx.height, seq, jpegOf(rgba, ctx.width, ctx.height))
          : frameMessage(KIND.RGBA, ctx.width, ctx.height, seq, rgba);
      }, () => {
        if (performance.now() > nextPrompt) {
          nextPrompt += 30_000;
          ctx.ws.send(JSON.stringify({ type: "prompt", prompt: prompts[++p % prompts.length] }));
        }
      });
    }, () => perClientOutputs[i]!++);
    await nap(500 + Math.random() * 2000); // reconnect
  }
}

async function floodClient() {
  await nap(60_000);
  while (performance.now() < end) {
    await session("flood", { type: "start", prompt: "flood", steps: 2, strength: 0.5 }, async (ctx) => {
      const msg = frameMessage(KIND.RGBA, ctx.width, ctx.height, 1, picture(ctx.width, ctx.height, 0));
      for (let k = 0; k < 1000; k++) ctx.ws.send(msg);
      for (let k = 0; k < 100; k++) ctx.ws.send(k % 2 ? "{not json" : JSON.stringify({ type: "nope" }));
      await nap(5000);
    });
    await nap(180_000);
  }
}

async function bigJpegClient() {
  const w = 1920, h = 1080;
  const big = jpegOf(picture(w, h, 0), w, h);
  // A bomb: a tiny JPEG whose frame header declares 4096x4096 (refused before decoding).
  const bomb = jpegOf(picture(64, 64, 0), 64, 64);
  const sof = bomb.findIndex((b, k) => b === 0xff && bomb[k + 1] === 0xc0);
  new DataView(bomb.buffer).setUint16(sof + 5, 4096);
  new DataView(bomb.buffer).setUint16(sof + 7, 4096);
  await nap(90_000);
  while (performance.now() < end) {
    const start = { type: "start", prompt: "big frames", steps: 2, strength: 0.5, format: "jpeg" };
    await session("big-jpeg", start, async (ctx) => {
      ctx.ws.send(frameMessage(KIND.JPEG, 4096, 4096, 1, bomb));
      await streamUntil(ctx, performance.now() + 20_000, (seq) => frameMessage(KIND.JPEG, w, h, seq + 1, big));
    });
    await nap(300_000);
  }
}

// ---- sampling ----
const csv = await Deno.open(`${outDir}/samples.csv`, { write: true, create: true, truncate: true });
const enc = new TextEncoder();
await csv.write(enc.encode(
  "t_s,rss_mb,heap_mb,server_fps,clients,frames_out,frames_processed,frames_dropped,errors,refused," +
    "idle_closed,jpeg_workers,min_client_fps,max_client_fps\n",
));
const samples: { t: number; rss: number }[] = [];
let lastOutputs = perClientOutputs.slice(), lastT = elapsedS();
async function sample() {
  const h = await health();
  const t = elapsedS(), dt = Math.max(1e-3, t - lastT);
  const fps = perClientOutputs.map((n, k) => (n - lastOutputs[k]!) / dt);
  lastOutputs = perClientOutputs.slice();
  lastT = t;
  const rss = h.memory.rss / 2 ** 20;
  samples.push({ t, rss });
  const row = [
    t.toFixed(1),
    rss.toFixed(1),
    (h.memory.heapUsed / 2 ** 20).toFixed(1),
    h.fps,
    h.clients,
    h.framesOut,
    h.framesProcessed,
    h.framesDropped,
    h.errors,
    h.refused,
    h.idleClosed,
    h.jpeg?.workers ?? "",
    Math.min(...fps).toFixed(2),
    Math.max(...fps).toFixed(2),
  ];
  await csv.write(enc.encode(row.join(",") + "\n"));
}

/** Least-squares slope of RSS (MB) over time, in MB per hour. */
function slopeMBPerHour(points: { t: number; rss: number }[]): number | null {
  if (points.length < 3) return null;
  const n = points.length, mt = points.reduce((a, p) => a + p.t, 0) / n, mr = points.reduce((a, p) => a + p.rss, 0) / n;
  let num = 0, den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.rss - mr);
    den += (p.t - mt) ** 2;
  }
  return den > 0 ? (num / den) * 3600 : null;
}

const drivers = [
  ...Array.from({ length: nClients }, (_, i) => webcamClient(i)),
  floodClient(),
  bigJpegClient(),
];
let failed: unknown = null;
const all = Promise.all(drivers).catch((e) => (failed = e));
while (performance.now() < end && !failed) {
  await sleep(sampleS * 1000);
  try {
    await sample();
  } catch (e) {
    failed = e;
  }
}
await all;
await sample().catch(() => {});
csv.close();
const status = await (async () => {
  child.kill("SIGTERM");
  return await child.status;
})();

const rss = samples.map((s) => s.rss);
const firstFrames = stats.firstFrameS.slice().sort((a, b) => a - b);
const summary = {
  minutes,
  clients: nClients,
  device: values.device,
  samples: samples.length,
  rssStartMB: rss[0] ?? null,
  rssEndMB: rss.at(-1) ?? null,
  rssMaxMB: rss.length ? Math.max(...rss) : null,
  slopeMBPerHour: slopeMBPerHour(samples),
  slopeSecondHalfMBPerHour: slopeMBPerHour(samples.filter((s) => s.t >= (minutes * 60) / 2)),
  outputs: stats.outputs,
  outputsPerClient: perClientOutputs,
  meanFps: stats.outputs / elapsedS(),
  sessions: stats.sessions,
  refused: stats.refused,
  errors: Object.fromEntries(stats.errors),
  firstFrameS: { median: firstFrames[firstFrames.length >> 1] ?? null, max: firstFrames.at(-1) ?? null },
  serverExit: status.code,
  failure: failed ? String(failed) : null,
};
await Deno.writeTextFile(`${outDir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
const f = (x: number | null, d = 0) => (x === null ? "n/a" : x.toFixed(d));
console.log(
  `soak: ${minutes} min, ${nClients} clients: RSS ${f(summary.rssStartMB)} -> ${f(summary.rssEndMB)} MB ` +
    `(max ${f(summary.rssMaxMB)}), slope ${f(summary.slopeMBPerHour, 1)} MB/h ` +
    `(second half ${f(summary.slopeSecondHalfMBPerHour, 1)} MB/h), ${summary.outputs} outputs ` +
    `(${summary.meanFps.toFixed(2)} FPS), per client ${perClientOutputs.join("/")}, ${stats.sessions} sessions, ` +
    `first frame median ${f(summary.firstFrameS.median, 1)} s max ${f(summary.firstFrameS.max, 1)} s, ` +
    `errors ${JSON.stringify(summary.errors)} -> ${outDir}`,
);
if (failed) Deno.exit(1);
