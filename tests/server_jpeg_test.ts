/**
 * The server's JPEG guards on their own: the frame-header reader (`jpeg_header.ts`) against real
 * jpeg-js files and broken ones, its decode-memory estimate against jpeg-js's own accounting, and
 * the Worker pool (`jpeg_pool.ts`): results, time limit, worker recycling, closing.
 */

import assert from "node:assert/strict";
import jpeg from "jpeg-js";
import { JpegHeaderError, readJpegHeader } from "../examples/server/jpeg_header.ts";
import { JpegDecodeError, JpegDecoderPool } from "../examples/server/jpeg_pool.ts";

function encode(w: number, h: number): Uint8Array {
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < rgba.length; i += 4) rgba.set([(i / 4) % 251, (i / 8) % 241, 90, 255], i);
  return new Uint8Array(jpeg.encode({ data: rgba, width: w, height: h }, 80).data);
}

Deno.test("jpeg header: size, components and decode estimate match what jpeg-js decodes and counts", () => {
  for (const [w, h] of [[1, 1], [17, 9], [64, 64], [640, 480], [333, 1001]] as const) {
    const bytes = encode(w, h);
    const header = readJpegHeader(bytes);
    assert.equal(header.width, w);
    assert.equal(header.height, h);
    assert.equal(header.components, 3);
    assert.equal(header.progressive, false);
    const decoded = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
    assert.equal(decoded.width, w);
    assert.equal(decoded.height, h);
    // jpeg-js counts the same allocations plus its small tables: a budget 1 MB under our estimate
    // must fail (when the estimate is over 1 MB) and one 1 MB over it must pass.
    const mb = header.decodeBytes / 2 ** 20;
    assert.doesNotThrow(() =>
      jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: Math.ceil(mb) + 1 })
    );
    if (mb > 2) {
      assert.throws(
        () => jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: Math.floor(mb) - 1 }),
        /maxMemoryUsageInMB/,
      );
    }
  }
});

Deno.test("jpeg header: broken or hostile inputs give JpegHeaderError, never a crash", () => {
  const good = encode(32, 32);
  const sof = good.findIndex((b, i) => b === 0xff && good[i + 1] === 0xc0);
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["not a JPEG", new TextEncoder().encode("GIF89a.........")],
    ["SOI only", new Uint8Array([0xff, 0xd8])],
    ["truncated before SOF", good.slice(0, sof + 3)],
    ["truncated SOF", good.slice(0, sof + 8)],
    ["segment length past the end", new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff, 0, 0])],
    ["SOS before SOF", new Uint8Array([0xff, 0xd8, 0xff, 0xda, 0, 2, 0, 0])],
    ["garbage after SOI", new Uint8Array([0xff, 0xd8, 0x12, 0x34, 0x56, 0x78])],
  ];
  const zero = good.slice();
  new DataView(zero.buffer).setUint16(sof + 5, 0);
  cases.push(["zero height", zero]);
  const comps = good.slice();
  comps[sof + 9] = 7;
  cases.push(["7 components", comps]);
  const sampling = good.slice();
  sampling[sof + 11] = 0x50; // H=5
  cases.push(["sampling factor 5", sampling]);
  for (const [name, bytes] of cases) assert.throws(() => readJpegHeader(bytes), JpegHeaderError, name);
  // Random bytes after a SOI: always an answer or a JpegHeaderError.
  let seed = 7;
  for (let n = 0; n < 2000; n++) {
    const bytes = good.slice(0, 2 + (n % 700));
    for (let k = 0; k < 8; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      bytes[2 + (seed % Math.max(1, bytes.length - 2))] = seed >>> 24;
    }
    try {
      readJpegHeader(bytes);
    } catch (e) {
      assert.ok(e instanceof JpegHeaderError, String(e));
    }
  }
});

Deno.test("jpeg pool: decodes in a worker, enforces its time limit, recycles workers and closes", async () => {
  const small = encode(48, 32);
  const pool = new JpegDecoderPool({ workers: 1, recycleAfterBytes: 1, timeoutMs: 60_000 });
  try {
    const limits = { maxMemoryMB: 64, maxMegapixels: 1, estimateBytes: 10 };
    const img = await pool.decode(small.slice(), limits);
    const ref = jpeg.decode(small, { useTArray: true, formatAsRGBA: false });
    assert.equal(img.width, 48);
    assert.deepEqual(img.data, ref.data, "the worker's pixels are jpeg-js's pixels");
    await pool.decode(small.slice(), limits);
    assert.equal(pool.stats.recycled, 2, "each decode past the budget replaced its worker");
    assert.equal(pool.stats.workersStarted, 2);
    // The decoder's own limits still apply inside the worker.
    await assert.rejects(pool.decode(small.slice(), { maxMemoryMB: 64, maxMegapixels: 0.001 }), JpegDecodeError);
  } finally {
    pool.close();
  }
  await assert.rejects(pool.decode(small.slice(), { maxMemoryMB: 64, maxMegapixels: 1 }), /closed/);

  // A decode slower than the limit kills its worker and fails; the pool goes on with a new one.
  const big = encode(1600, 1200);
  const strict = new JpegDecoderPool({ workers: 1, timeoutMs: 1 });
  try {
    await assert.rejects(
      strict.decode(big.slice(), { maxMemoryMB: 128, maxMegapixels: 2 }),
      /decoding took longer than 1 ms/,
    );
    assert.equal(strict.stats.timedOut, 1);
    assert.equal(strict.workers, 0, "the stuck worker was terminated");
  } finally {
    strict.close();
  }
});
