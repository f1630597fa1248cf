// The public streaming API (Engine, Stream) on the CPU backend with an engine built from the golden
// tiny model files: the hot path (`push`, one FFI call per frame) reproduces the golden frames,
// prompt changes, reset, isolation of streams, any-size input, and the error cases.
import assert from "node:assert/strict";
import { join } from "node:path";
import { Engine, EngineError, type Frame, type Stream } from "../mod.ts";
import { openSafetensors } from "../ffi/formats/mod.ts";
import { buildPipelineFixture } from "./_fixtures/pipeline_engine.ts";

const fixture = await buildPipelineFixture("l2d_stream_test_");
const { caseDir: CASE, caseJson, dir, enginePath, n: N, frame } = fixture;
const cfg = caseJson.config;
const SIZE = fixture.size;
const engine = await Engine.load(enginePath, { device: "cpu" });

function openStream(extra: { prompt?: string; seed?: number } = {}): Promise<Stream> {
  return engine.createStream({
    prompt: extra.prompt ?? String(cfg.prompt),
    applyTemplate: false,
    width: SIZE,
    height: SIZE,
    tIndexList: cfg.t_index_list,
    seed: extra.seed ?? Number(cfg.noise_seed),
  });
}

async function pushAll(stream: Stream, from: number, to: number): Promise<(Uint8Array | null)[]> {
  const out: (Uint8Array | null)[] = [];
  for (let i = from; i < to; i++) out.push((await stream.push(frame(i)))?.data ?? null);
  return out;
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test("Stream.push() reproduces the golden frames through the hot path, with warm-up and latency", async () => {
  using stream = await openStream();
  assert.equal(stream.latency, cfg.t_index_list.length - 1);
  const outs = await pushAll(stream, 0, N);
  const expected = await (async () => {
    using f = await openSafetensors(join(CASE, "outputs.safetensors"));
    return await f.read("stream_frames_u8");
  })();
  // 8 warm-up pushes and `latency` streamed pushes give nothing; then row k of the golden frames
  // (the output of __call__(frame 8 + k)) for k >= latency.
  const nulls = outs.findIndex((o) => o !== null);
  assert.equal(nulls, 8 + stream.latency);
  const size = SIZE * SIZE * 3;
  for (let k = stream.latency; k < N - 8; k++) {
    const got = outs[8 + k]!;
    assert.ok(got, `frame ${8 + k} produced no output`);
    assert.ok(maxDiff(got, expected.data.subarray(k * size, (k + 1) * size)) <= 1, `frame ${8 + k} differs`);
  }
});

Deno.test("Stream.warmup() returns the 8 golden warm-up frames; streaming continues from there", async () => {
  using stream = await openStream();
  const warm = await stream.warmup(Array.from({ length: 8 }, (_, i) => frame(i)));
  assert.equal(warm.length, 8);
  using f = await openSafetensors(join(CASE, "outputs.safetensors"));
  const expected = await f.read("warmup_frames_u8");
  const size = SIZE * SIZE * 3;
  warm.forEach((w, i) => {
    assert.equal(w.width, SIZE);
    assert.ok(maxDiff(w.data, expected.data.subarray(i * size, (i + 1) * size)) <= 1, `warm-up frame ${i} differs`);
  });
  // No implicit warm-up afterwards: after `latency` pushes, frames come out.
  const outs = await pushAll(stream, 8, 8 + stream.latency + 1);
  assert.equal(outs.filter((o) => o !== null).length, 1);
});

Deno.test("Stream: two streams interleaved stay isolated, reset() starts over, setPrompt() changes the output", async () => {
  // Reference: one stream alone.
  const ref = await (async () => {
    using s = await openStream();
    return await pushAll(s, 0, 11);
  })();
  using a = await openStream();
  using b = await openStream({ prompt: "a completely different prompt", seed: 7 });
  const outA: (Uint8Array | null)[] = [];
  for (let i = 0; i < 11; i++) {
    outA.push((await a.push(frame(i)))?.data ?? null);
    await b.push(frame(N - 1 - i)); // other frames, other prompt, other seed, same engine
  }
  for (let i = 9; i < 11; i++) assert.equal(maxDiff(outA[i]!, ref[i]!), 0, `stream A frame ${i} was affected by B`);

  await a.reset();
  const again = await pushAll(a, 0, 11);
  for (let i = 9; i < 11; i++) assert.equal(maxDiff(again[i]!, ref[i]!), 0, `reset stream differs at frame ${i}`);

  // Prompt change mid-stream: no new warm-up (the next push still produces a frame) and a different result.
  await a.setPrompt("a zebra made of glass");
  const changed = await a.push(frame(11));
  assert.ok(changed, "a prompt change must not restart the warm-up");
  using c = await openStream();
  const same = await pushAll(c, 0, 12);
  assert.ok(maxDiff(changed.data, same[11]!) > 0, "the new prompt had no effect");
});

Deno.test("Stream: pushes on two streams at the same time (two native threads) match sequential runs", async () => {
  const sequential = async (seed: number) => {
    using s = await openStream({ seed });
    return await pushAll(s, 0, 10);
  };
  const refA = await sequential(1), refB = await sequential(2);
  using a = await openStream({ seed: 1 });
  using b = await openStream({ seed: 2 });
  for (let i = 0; i < 10; i++) {
    const [oa, ob] = await Promise.all([a.push(frame(i)), b.push(frame(i))]);
    if (i < 8 + a.latency) continue;
    assert.equal(maxDiff(oa!.data, refA[i]!), 0, `stream A differs at frame ${i}`);
    assert.equal(maxDiff(ob!.data, refB[i]!), 0, `stream B differs at frame ${i}`);
  }
});

Deno.test("Stream.push() accepts RGBA frames of any size (scaled and centre-cropped)", async () => {
  using s = await openStream();
  const big: Frame = { data: new Uint8Array(100 * 80 * 4).fill(128), width: 100, height: 80, channels: 4 };
  let out: Frame | null = null;
  for (let i = 0; i < 8 + s.latency + 1; i++) out = await s.push(big);
  assert.ok(out);
  assert.equal(out.width, SIZE);
  assert.equal(out.height, SIZE);
  assert.equal(out.data.length, SIZE * SIZE * 3);
});

Deno.test("Stream and Engine reject bad input with typed errors", async () => {
  await assert.rejects(engine.createStream({ prompt: "x", width: 100 }), RangeError);
  await assert.rejects(engine.createStream({ prompt: "x", width: 64, height: 64, strength: 2 }), RangeError);
  await assert.rejects(engine.createStream({ prompt: "x", width: 64, height: 64, seed: -1 }), RangeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(engine.createStream({ prompt: 42 as any }), TypeError);
  // Checked in TypeScript before any native call (and again natively).
  await assert.rejects(engine.createStream({ prompt: "x", width: 64, height: 64, tIndexList: [45, 32] }), RangeError);
  // A stream whose KV caches cannot fit is refused before any memory is touched.
  await assert.rejects(
    engine.createStream({ prompt: "x", width: 4096, height: 4096 }),
    (e: unknown) => e instanceof EngineError && /GiB/.test(e.message),
  );
  const s = await openStream();
  await assert.rejects(s.push({ data: new Uint8Array(10), width: 64, height: 64 }), RangeError);
  await assert.rejects(
    s.push({ data: new Uint8Array(64 * 64 * 2), width: 64, height: 64, channels: 2 as 3 }),
    RangeError,
  );
  await assert.rejects(s.push({ data: new Uint8Array(0), width: 0, height: 64 }), RangeError);
  await assert.rejects(s.warmup([frame(0)]), RangeError);
  // The native hot path checks the byte count itself (a C caller cannot over-read a short frame).
  await assert.rejects(
    s.session.pushFrame(new Uint8Array(10), { width: 64, height: 64, channels: 3 }, new Uint8Array(SIZE * SIZE * 3)),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /bytes/.test(e.message),
  );
  // Concurrent pushes on one stream: the second is refused, the first completes.
  const first = s.push(frame(0));
  await assert.rejects(s.push(frame(1)), (e: unknown) => e instanceof EngineError && e.code === "BUSY");
  await first;
  s.close();
  s.close();
  await assert.rejects(s.push(frame(0)), (e: unknown) => e instanceof EngineError && e.code === "CLOSED");
  // Engine files: wrong target, corrupt, truncated.
  await assert.rejects(Engine.load(enginePath, { device: "cuda" }), EngineError);
  const bytes = await Deno.readFile(enginePath);
  const corrupt = join(dir, "corrupt.l2de");
  const flipped = bytes.slice();
  flipped[flipped.length - 100_000] ^= 0xff;
  await Deno.writeFile(corrupt, flipped);
  await assert.rejects(Engine.load(corrupt, { device: "cpu" }), /corrupt|checksum/);
  const truncated = join(dir, "truncated.l2de");
  await Deno.writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
  await assert.rejects(Engine.load(truncated, { device: "cpu" }), /truncated|size|short/i);
});

Deno.test("Stream similar-image filter skips the UNet for unchanged frames (off by default)", async () => {
  const run = async (filter: boolean) => {
    using s = await engine.createStream({
      prompt: "x",
      width: SIZE,
      height: SIZE,
      tIndexList: cfg.t_index_list,
      ...(filter ? { similarImageFilter: { threshold: 0.9, maxSkipFrames: 5 } } : {}),
    });
    const outs = await pushAll(s, 0, 8); // warm-up
    for (let i = 0; i < 4; i++) outs.push((await s.push(frame(8)))?.data ?? null); // the same frame 4 times
    return outs.slice(8 + s.latency).map((o) => o!);
  };
  const off = await run(false), on = await run(true);
  // Without the filter every frame is denoised with fresh noise; with it, repeats return the last output.
  assert.ok(maxDiff(off[0]!, off[1]!) > 0 || maxDiff(off[1]!, off[2]!) > 0, "unfiltered frames should differ");
  assert.equal(maxDiff(on[0]!, on[1]!), 0);
  assert.equal(maxDiff(on[1]!, on[2]!), 0);
});

Deno.test("Stream.transform() pipes frames and yields only real outputs", async () => {
  using s = await openStream();
  const frames = ReadableStream.from(Array.from({ length: 11 }, (_, i) => frame(i)));
  const outs: Frame[] = [];
  for await (const f of frames.pipeThrough(s.transform())) outs.push(f);
  assert.equal(outs.length, 11 - 8 - s.latency);
});

Deno.test({
  name: "stream tests: clean up",
  fn: async () => {
    engine.close();
    await Deno.remove(dir, { recursive: true });
  },
});
