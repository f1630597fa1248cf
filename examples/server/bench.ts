/**
 * Measures what the demo server's design choices rest on: `deno run -A examples/server/bench.ts
 * [--sizes 64,128,512] [--frames 30]`.
 *
 * 1. codec cost per frame: jpeg-js encode/decode vs a raw copy, at each size;
 * 2. WebSocket transport cost on loopback: round trip of one frame-sized message (Hono echo);
 * 3. end to end: a protocol client streaming to the real server on the default (or configured)
 *    engine, as the page does (one frame in flight): output FPS and latency.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Hono } from "hono";
import { upgradeWebSocket } from "hono/deno";
import jpeg from "jpeg-js";
import { createLive2DiffServer, HEADER_BYTES, KIND } from "./app.ts";
import { defaultStreamSize, loadEngine, printNotice } from "../_engine.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { sizes: { type: "string", default: "64,128,512" }, frames: { type: "string", default: "30" } },
});
const sizes = values.sizes.split(",").map(Number);
const frames = Number(values.frames);

/** A camera-like test image (smooth gradients + texture), RGBA. */
function image(s: number): Uint8Array {
  const d = new Uint8Array(s * s * 4);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      const i = (y * s + x) * 4;
      d[i] = (x * 255) / s;
      d[i + 1] = (y * 255) / s;
      d[i + 2] = 128 + 60 * Math.sin(x / 3) * Math.cos(y / 5);
      d[i + 3] = 255;
    }
  }
  return d;
}

function time(n: number, fn: () => void): number {
  for (let i = 0; i < Math.min(5, n); i++) fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) fn();
  return (performance.now() - t) / n;
}

console.log("1. codec cost per frame (ms; jpeg-js q80 vs raw copy)");
const jpegSize = new Map<number, number>();
for (const s of sizes) {
  const rgba = image(s);
  const n = s <= 128 ? 100 : 20;
  let enc = new Uint8Array();
  const te = time(n, () => (enc = new Uint8Array(jpeg.encode({ data: rgba, width: s, height: s }, 80).data)));
  const td = time(n, () => jpeg.decode(enc, { useTArray: true, formatAsRGBA: false }));
  const tc = time(n * 10, () => rgba.slice());
  jpegSize.set(s, enc.byteLength);
  console.log(
    `   ${s}x${s}: raw RGBA ${rgba.byteLength} B copy ${tc.toFixed(3)} | JPEG ${enc.byteLength} B ` +
      `encode ${te.toFixed(2)} decode ${td.toFixed(2)}`,
  );
}

async function serve(app: Hono): Promise<{ port: number; stop: () => Promise<void> }> {
  const ac = new AbortController();
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: resolve }, app.fetch);
  const { port } = await promise;
  return { port, stop: async () => (ac.abort(), await http.finished) };
}

console.log("2. WebSocket transport on loopback (ms per round trip of one message to a Hono echo)");
{
  const echo = new Hono();
  echo.get("/", (c) => c.html("<title>echo</title>"));
  echo.get("/ws", upgradeWebSocket(() => ({ onMessage: (evt, ws) => ws.send(evt.data as ArrayBuffer) })));
  const { port, stop } = await serve(echo);
  const cases = sizes.flatMap((s) => [
    { label: `${s}x${s} raw RGBA in`, bytes: HEADER_BYTES + s * s * 4 },
    { label: `${s}x${s} raw RGB out`, bytes: HEADER_BYTES + s * s * 3 },
    { label: `${s}x${s} JPEG`, bytes: HEADER_BYTES + jpegSize.get(s)! },
  ]);
  // The page's client is a browser: measure from Chromium when it is installed. (Deno's own
  // WebSocket client shows ~40 ms Nagle/delayed-ACK stalls on small messages, browsers do not.)
  const chromiumPath = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
  const script = (list: number[]) =>
    `(async () => {
    const ws = new WebSocket("ws://127.0.0.1:${port}/ws"); ws.binaryType = "arraybuffer";
    await new Promise((r) => (ws.onopen = r));
    const out = [];
    for (const bytes of ${JSON.stringify(list)}) {
      const msg = new Uint8Array(bytes);
      const once = () => new Promise((r) => { ws.onmessage = () => r(); ws.send(msg); });
      for (let i = 0; i < 5; i++) await once();
      const n = bytes > 300000 ? 20 : 100, t = performance.now();
      for (let i = 0; i < n; i++) await once();
      out.push((performance.now() - t) / n);
    }
    ws.close();
    return out;
  })()`;
  let client = "Deno";
  let results: number[];
  try {
    Deno.statSync(chromiumPath);
    // deno-lint-ignore no-import-prefix
    const { chromium } = await import("npm:playwright-core@1.65.1");
    const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox", "--disable-gpu"] });
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    results = await page.evaluate(script(cases.map((c) => c.bytes))) as number[];
    await browser.close();
    client = "Chromium";
  } catch {
    results = await (0, eval)(script(cases.map((c) => c.bytes)));
  }
  cases.forEach((c, i) => console.log(`   ${c.label} (${c.bytes} B): ${results[i]!.toFixed(3)} (${client} client)`));
  await stop();
}

console.log("3. end to end through the server (as the page streams: one frame in flight)");
{
  const engine = await loadEngine();
  printNotice(engine);
  const side = defaultStreamSize(engine);
  const server = createLive2DiffServer({ engine, width: side, height: side });
  const { port, stop } = await serve(server.app);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  ws.binaryType = "arraybuffer";
  let acked = 0, outputs = 0, firstOut = 0, ready = false;
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let wake = () => {};
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      const m = JSON.parse(e.data);
      if (m.type === "hello") ws.send(JSON.stringify({ type: "start", prompt: "bench", strength: 0.5, steps: 2 }));
      if (m.type === "ready") ready = true;
      if (m.type === "ack") acked = Math.max(acked, m.seq);
    } else {
      const v = new DataView(e.data);
      acked = Math.max(acked, v.getUint32(12, true));
      if (outputs++ === 0) firstOut = performance.now();
      latencies.push(performance.now() - sentAt.get(v.getUint32(8, true))!);
    }
    wake();
  };
  const until = async (pred: () => boolean) => {
    while (!pred()) await new Promise<void>((r) => (wake = r));
  };
  await until(() => ready);
  const img = image(side);
  const msg = new Uint8Array(HEADER_BYTES + img.byteLength);
  const view = new DataView(msg.buffer);
  view.setUint8(0, KIND.RGBA);
  view.setUint8(1, 1);
  view.setUint16(2, side, true);
  view.setUint16(4, side, true);
  msg.set(img, HEADER_BYTES);
  let seq = 0;
  while (outputs < frames + 1) {
    await until(() => seq - acked < 1);
    view.setUint32(8, ++seq, true);
    sentAt.set(seq, performance.now());
    ws.send(msg);
  }
  const elapsed = (performance.now() - firstOut) / 1000;
  latencies.sort((a, b) => a - b);
  const m = server.metrics();
  console.log(
    `   ${engine.device} ${side}x${side}: ${(frames / elapsed).toFixed(2)} FPS over ${frames} outputs, ` +
      `latency median ${latencies[latencies.length >> 1]!.toFixed(0)} ms, engine ${m.engineMs?.toFixed(0)} ms/push, ` +
      `${m.framesDropped} dropped`,
  );
  ws.close();
  await server.close();
  await stop();
  engine.close();
}
