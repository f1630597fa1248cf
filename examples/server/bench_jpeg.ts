/**
 * Measures JPEG decoding as the server does it: `deno run -A examples/server/bench_jpeg.ts
 * [--size 1920x1080] [--frames 20]`.
 *
 * 1. inline (on the event loop, as before): the event-loop stall per frame is the decode time;
 * 2. the Worker pool (`jpeg_pool.ts`): the longest event-loop gap while frames decode;
 * 3. memory: RSS before the JPEG phase, at its peak, and after the pool's idle workers are gone.
 *
 * @module
 */

import { parseArgs } from "node:util";
import jpeg from "jpeg-js";
import { JpegDecoderPool } from "./jpeg_pool.ts";
import { readJpegHeader } from "./jpeg_header.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { size: { type: "string", default: "1920x1080" }, frames: { type: "string", default: "20" } },
});
const [w, h] = values.size.split("x").map(Number) as [number, number];
const frames = Number(values.frames);
const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

const rgba = new Uint8Array(w * h * 4);
for (let i = 0; i < rgba.length; i += 4) {
  const x = (i / 4) % w, y = Math.floor(i / 4 / w);
  rgba.set([(x * 7 + y * 3) & 255, (x * y) & 255, 128 + 100 * Math.sin(x / 9) * Math.cos(y / 13), 255], i);
}
const bytes = new Uint8Array(jpeg.encode({ data: rgba, width: w, height: h }, 85).data);
const header = readJpegHeader(bytes);
console.log(
  `${w}x${h} JPEG, ${bytes.byteLength} bytes, ${frames} frames, decode estimate ${mib(header.decodeBytes)}`,
);

/** Longest gap between 5 ms timer ticks while `fn` runs. */
async function maxGap(fn: () => Promise<void>): Promise<number> {
  let gap = 0, last = performance.now(), on = true;
  const tick = () => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
    if (on) setTimeout(tick, 5);
  };
  setTimeout(tick, 5);
  await fn();
  on = false;
  return gap;
}

const rss0 = Deno.memoryUsage().rss;
const inline = await maxGap(async () => {
  for (let i = 0; i < 3; i++) {
    jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 256 });
    await new Promise((r) => setTimeout(r, 10));
  }
});
console.log(`inline: event-loop stall per frame ${inline.toFixed(0)} ms`);

const pool = new JpegDecoderPool({ workers: 2, idleMs: 2000, timeoutMs: 120_000 });
let peak = Deno.memoryUsage().rss;
const t0 = performance.now();
const pooled = await maxGap(async () => {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < frames; i++) {
    const limits = { maxMemoryMB: 128, maxMegapixels: (w * h) / 1e6, estimateBytes: header.decodeBytes };
    pending.push(pool.decode(bytes.slice(), limits));
    if (pending.length >= 2) await pending.shift();
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  await Promise.all(pending);
});
const fps = frames / ((performance.now() - t0) / 1000);
console.log(
  `worker pool: event-loop max gap ${pooled.toFixed(0)} ms, ${fps.toFixed(1)} frames/s decoded, ` +
    `${pool.stats.recycled} workers recycled`,
);
await new Promise((r) => setTimeout(r, 3000)); // idle workers are terminated after 2 s
const after = Deno.memoryUsage().rss;
console.log(
  `memory: RSS ${mib(rss0)} before, ${mib(peak)} peak, ${mib(after)} after (${pool.workers} workers left)`,
);
pool.close();
