// The captured per-frame region of Stream.push() (issue 15: one CUDA graph per frame), checked on
// the CPU: with L2D_CAPTURE_AUDIT=1 the CPU backend captures the region like CUDA would (then
// replays it by running it again) and throws if the region does anything a CUDA graph cannot
// replay: a host transfer or wait, another allocation sequence, other host arguments. The same
// pushes on a context without the audit (eager every frame) must give bit-identical frames,
// through a prompt change (graph kept: buffers rewritten in place), a reset (graph kept) and a new
// frame size (graph re-captured).
import assert from "node:assert/strict";
import { Engine, EngineError, type Frame, type Stream, type StreamOptions } from "../mod.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { buildPipelineFixture } from "./_fixtures/pipeline_engine.ts";

const fixture = await buildPipelineFixture("l2d_stream_capture_test_");
const { caseJson, dir, enginePath, video, h: H, w: W, frame } = fixture;
const cfg = caseJson.config;
const SIZE = fixture.size;

// The audit is read once per context, when it is created.
async function loadEngine(audit: string | null): Promise<Engine> {
  if (audit === null) Deno.env.delete("L2D_CAPTURE_AUDIT");
  else Deno.env.set("L2D_CAPTURE_AUDIT", audit);
  try {
    return await Engine.load(enginePath, { device: "cpu" });
  } finally {
    Deno.env.delete("L2D_CAPTURE_AUDIT");
  }
}

// Another camera: RGBA at 100x80 (scaled and cropped to the stream size), content from the video.
const rgba = (i: number): Frame => {
  const data = new Uint8Array(100 * 80 * 4);
  for (let p = 0; p < 100 * 80; p++) {
    const src = (i * H * W + (p % (H * W))) * 3;
    data.set(video.data.subarray(src, src + 3), p * 4);
    data[p * 4 + 3] = 255;
  }
  return { data, width: 100, height: 80, channels: 4 };
};

interface FramePath {
  graph: number;
  eager: number;
  captures: number;
  replays: number;
}

async function framePath(s: Stream): Promise<FramePath> {
  using io = new TensorMap();
  await s.session.run("frame_path", io);
  const get = (n: string) => new Int32Array(io.get(n).data.slice().buffer)[0]!;
  return { graph: get("graph"), eager: get("eager"), captures: get("captures"), replays: get("replays") };
}

// The pipeline case's stream (its prompt, size, steps and seed).
const caseStream: StreamOptions = {
  prompt: String(cfg.prompt),
  applyTemplate: false,
  width: SIZE,
  height: SIZE,
  tIndexList: cfg.t_index_list,
  seed: Number(cfg.noise_seed),
};

// One scripted session: warm-up, 5 streamed frames (eager, captured, 3 replays), a prompt change
// (same length: in place), a reset, and a camera of another size.
async function script(engine: Engine) {
  using s = await engine.createStream(caseStream);
  const outs: Uint8Array[] = [];
  const push = async (f: Frame) => {
    const o = await s.push(f);
    if (o) outs.push(o.data.slice());
  };
  for (let i = 0; i < 13; i++) await push(frame(i));
  const afterFirst = await framePath(s);
  await s.setPrompt("a zebra made of glass");
  for (let i = 13; i < 15; i++) await push(frame(i));
  const afterPrompt = await framePath(s);
  await s.reset();
  for (let i = 0; i < 10; i++) await push(frame(i));
  const afterReset = await framePath(s);
  for (let i = 0; i < 3; i++) await push(rgba(i));
  return { outs, afterFirst, afterPrompt, afterReset, end: await framePath(s) };
}

Deno.test("Stream.push(): the captured region replays bit-identically to eager steps (prompt, reset, resize)", async () => {
  using audited = await loadEngine("1");
  using plain = await loadEngine(null);
  const a = await script(audited);
  const e = await script(plain);
  // Eager everywhere without the audit: the CPU does not capture.
  assert.deepEqual(e.end, { graph: 0, eager: 12, captures: 0, replays: 0 });
  // With it: the first streamed frame of a geometry is eager, the second captured, the rest replayed.
  assert.deepEqual(a.afterFirst, { graph: 1, eager: 1, captures: 1, replays: 3 });
  assert.deepEqual(a.afterPrompt, { graph: 1, eager: 1, captures: 1, replays: 5 }, "a prompt change kept the graph");
  assert.deepEqual(a.afterReset, { graph: 1, eager: 1, captures: 1, replays: 7 }, "a reset kept the graph");
  assert.deepEqual(a.end, { graph: 1, eager: 2, captures: 2, replays: 8 }, "a new frame size re-captures");
  const latency = cfg.t_index_list.length - 1; // streamed pushes that give no frame after a warm-up
  assert.equal(e.outs.length, 5 - latency + 2 + (2 - latency) + 3);
  assert.equal(a.outs.length, e.outs.length);
  a.outs.forEach((o, i) => assert.deepEqual(o, e.outs[i], `output ${i} differs from the eager step`));
});

// With the similar-image filter, frames at the stream size take the device path: the frame is fitted
// once, outside the region, and the captured region reads that fitted image from a fixed buffer.
// Frames of another size take the host path, whose region fits the frame itself: another region,
// so a switch between the two re-captures. Replays must match eager steps byte for byte.
async function filteredScript(engine: Engine) {
  using s = await engine.createStream({ ...caseStream, similarImageFilter: { threshold: 0.9, maxSkipFrames: 1 } });
  const outs: (Uint8Array | null)[] = [];
  const push = async (f: Frame) => outs.push((await s.push(f))?.data.slice() ?? null);
  for (let i = 0; i < 8; i++) await push(frame(i));
  for (const i of [8, 9, 9, 9, 10, 11, 12]) await push(frame(i));
  const atSize = await framePath(s);
  for (let i = 0; i < 3; i++) await push(rgba(i));
  const resized = await framePath(s);
  for (const i of [13, 14, 15]) await push(frame(i));
  return { outs, atSize, resized, end: await framePath(s) };
}

Deno.test("Stream.push() with the similar-image filter: the region reuses the filter's fitted image, replays match eager", async () => {
  using audited = await loadEngine("1");
  using plain = await loadEngine(null);
  const a = await filteredScript(audited);
  const e = await filteredScript(plain);
  assert.equal(e.end.captures, 0);
  assert.ok(a.atSize.captures === 1 && a.atSize.replays >= 2, `at size: ${JSON.stringify(a.atSize)}`);
  assert.equal(a.resized.captures, 2, "the host path's region (it fits the frame) is another capture");
  assert.equal(a.end.captures, 3, "back at size: the region without the fit again");
  assert.ok(a.end.replays > a.resized.replays, "and it replays");
  assert.ok(e.outs.filter((o) => o).length >= 8);
  a.outs.forEach((o, i) => assert.deepEqual(o, e.outs[i], `push ${i} differs from the eager step`));
});

// The ops model's frame_graph (the per-frame path in small: upload, region eager / captured /
// replayed, download) on an audited CPU context: the audit accepts the plain region and refuses a
// sync inside it, an allocation the capture did not make, and a host argument that changes.
async function frameGraph(model: Model, sync: number, vary: number): Promise<number> {
  using io = new TensorMap();
  const frames = new Uint8Array(4 * 8 * 12 * 3).map((_, i) => (i * 37) % 251);
  io.set("frames", { dtype: "U8", shape: [4, 8, 12, 3], data: frames });
  io.setI64("size", [8, 8], [2]);
  io.setI64("params", [sync, vary], [2]);
  await model.run("frame_graph", io);
  return new Int32Array(io.get("captured").data.slice().buffer)[0]!;
}

Deno.test("the capture audit refuses what a CUDA graph cannot replay, naming it", async () => {
  Deno.env.set("L2D_CAPTURE_AUDIT", "1");
  using ctx = (() => {
    try {
      return Context.create("cpu");
    } finally {
      Deno.env.delete("L2D_CAPTURE_AUDIT");
    }
  })();
  using model = await Model.create(ctx, "ops", {});
  assert.equal(await frameGraph(model, 0, 0), 1);
  const internal = (re: RegExp) => (e: unknown) =>
    e instanceof EngineError && e.code === "INTERNAL" && re.test(e.message);
  await assert.rejects(frameGraph(model, 1, 0), internal(/capture audit: synchronize inside the captured/));
  // The extra Relu shifts the allocations: the replay's allocation after the captured four is the
  // final Clamp's, made in "unary".
  await assert.rejects(
    frameGraph(model, 0, 1),
    internal(/capture audit: the replayed region does more than the captured one \(allocation \d+ in unary after 4/),
  );
  await assert.rejects(
    frameGraph(model, 0, 2),
    internal(
      /capture audit: random_normal draw #\d+ .* is 2 in random_normal, the captured region's was 1 in random_normal/,
    ),
  );
});

Deno.test("L2D_CAPTURE_AUDIT accepts only 0 and 1", async () => {
  await assert.rejects(
    loadEngine("yes"),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /L2D_CAPTURE_AUDIT/.test(e.message),
  );
  (await loadEngine("0")).close();
});

Deno.test({
  name: "stream capture tests: clean up",
  fn: async () => {
    await Deno.remove(dir, { recursive: true });
  },
});
