// The similar-image filter (StreamDiffusion's) through the public Stream API on the CPU backend,
// frames at the stream size, which the native stream runs on its device path (fit, similarity op,
// skip or step). Its decisions must follow the documented rule, computed here independently from
// the frame bytes (what the host path computes): skip with probability
// max(0, 1 - (1 - sim) / (1 - threshold)) where sim is the cosine similarity of the frame and the
// last kept frame mapped to [-1, 1], the draw is Philox uniform(seed, stream (0, 5, 0)) at the next
// frame's video index, at most maxSkipFrames in a row, never before the first output. A skipped push
// repeats the last output; a kept one equals a filter-off stream fed only the kept frames.
import assert from "node:assert/strict";
import { Engine, type Stream, TensorMap } from "../mod.ts";
import { philoxUniform } from "../ffi/philox.ts";
import { buildPipelineFixture } from "./_fixtures/pipeline_engine.ts";

const fixture = await buildPipelineFixture("l2d_similar_filter_test_");
const { caseJson, dir, enginePath, n: N, w: W, frame } = fixture;
const cfg = caseJson.config;
const SIZE = fixture.size;
const SEED = 77;
const THRESHOLD = 0.9;
const MAX_SKIP = 2;

const engine = await Engine.load(enginePath, { device: "cpu" });

/** frame_cosine_similarity: RGB bytes mapped to [-1, 1], summed in double pixel by pixel. */
function cosine(a: Uint8Array, b: Uint8Array): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    const va = a[i]! / 127.5 - 1, vb = b[i]! / 127.5 - 1;
    dot += va * vb;
    na += va * va;
    nb += vb * vb;
  }
  if (na === 0 || nb === 0) return na === nb ? 1 : 0;
  return dot / Math.sqrt(na * nb);
}

function openStream(filter: boolean): Promise<Stream> {
  return engine.createStream({
    prompt: "x",
    width: SIZE,
    height: SIZE,
    tIndexList: cfg.t_index_list,
    seed: SEED,
    ...(filter ? { similarImageFilter: { threshold: THRESHOLD, maxSkipFrames: MAX_SKIP } } : {}),
  });
}

Deno.test("similar-image filter on the device path follows the documented rule, push by push", async () => {
  assert.equal(W, SIZE, "the golden video is at the stream size (the device path on the CPU)");
  // After the 8 warm-up frames: runs of repeated frames (sim 1: skipped until MAX_SKIP) and
  // consecutive video frames (sim < 1: a random decision).
  const clip = [8, 8, 8, 8, 8, 9, 10, 10, 11, 11, 11, 11, 12].map((i) => Math.min(i, N - 1));
  const T = cfg.t_index_list.length;
  const draws = philoxUniform(8 + clip.length + 1, SEED, 0, 5, 0);
  // The rule, from the bytes.
  const expectSkip: boolean[] = [];
  const kept: number[] = [];
  let prev: Uint8Array | null = null, skipped = 0, index = 8, streamed = 0, haveOutput = false;
  for (const i of clip) {
    const f = frame(i).data;
    let skip = false;
    if (prev && haveOutput) {
      const p = Math.max(0, 1 - (1 - cosine(prev, f)) / (1 - THRESHOLD));
      skip = draws[index]! < p && skipped < MAX_SKIP;
    }
    expectSkip.push(skip);
    if (skip) {
      skipped++;
    } else {
      skipped = 0;
      prev = f;
      kept.push(i);
      index++;
      if (++streamed >= T) haveOutput = true;
    }
  }
  assert.ok(expectSkip.filter((s) => s).length >= 3, "the clip should make the filter skip");
  assert.ok(expectSkip.some((s, k) => !s && clip[k] === clip[k - 1]), "MAX_SKIP should stop a run of repeats");

  using on = await openStream(true);
  using off = await openStream(false);
  for (let i = 0; i < 8; i++) {
    assert.equal(await on.push(frame(i)), null);
    assert.equal(await off.push(frame(i)), null);
  }
  const offOuts: (Uint8Array | null)[] = [];
  for (const i of kept) offOuts.push((await off.push(frame(i)))?.data ?? null);
  let last: Uint8Array | null = null, k = 0;
  for (let n = 0; n < clip.length; n++) {
    const got = (await on.push(frame(clip[n]!)))?.data ?? null;
    if (expectSkip[n]) {
      assert.ok(got && last, `push ${n}: a skipped frame repeats the last output`);
      assert.deepEqual(got, last, `push ${n}: skipped, so the last output again`);
    } else {
      assert.deepEqual(got, offOuts[k], `push ${n}: kept, so what the unfiltered stream gives for it`);
      k++;
      if (got) last = got;
    }
  }
  assert.equal(k, kept.length);
});

/** Top-level CPU pool loops (the CPU's launch counter) that one push runs, and whether it ran the step. */
async function pushLoops(s: Stream, i: number): Promise<{ loops: number; stepped: boolean }> {
  const regions = async () => {
    using io = new TensorMap();
    await s.session.run("frame_path", io);
    const get = (n: string) => new Int32Array(io.get(n).data.slice().buffer)[0]!;
    return get("eager") + get("captures") + get("replays");
  };
  const r0 = await regions(), l0 = engine.stats().launches!.cpu_loops;
  await s.push(frame(Math.min(i, N - 1)));
  return { loops: engine.stats().launches!.cpu_loops - l0, stepped: (await regions()) > r0 };
}

Deno.test("similar-image filter: a kept frame is fitted once (the step reuses the filter's fitted image)", async () => {
  // The CPU fits a frame at the stream size in one pool loop; the similarity and the copy into the
  // previous-frame buffer are host code and a memcpy (no pool loop). So if the step reuses the
  // filter's fitted image, a kept push runs exactly the pool loops of an unfiltered push (whose
  // step fits the frame itself); fitting again inside the step would add one.
  using on = await openStream(true);
  using off = await openStream(false);
  for (let i = 0; i < 8; i++) {
    await on.push(frame(i));
    await off.push(frame(i));
  }
  const unfiltered = new Set<number>();
  for (let i = 8; i < 13; i++) unfiltered.add((await pushLoops(off, i)).loops);
  assert.equal(unfiltered.size, 1, `an unfiltered push always runs the same loops, got ${[...unfiltered]}`);
  const [perFrame] = [...unfiltered];
  const kept: number[] = [], skipped: number[] = [];
  for (const i of [8, 9, 10, 10, 10, 10, 11, 11, 11, 12]) {
    const { loops, stepped } = await pushLoops(on, i);
    (stepped ? kept : skipped).push(loops);
  }
  assert.ok(skipped.length >= 2 && kept.length >= 4, `kept ${kept.length}, skipped ${skipped.length}`);
  // A skipped push fits the frame (at least one loop) and runs no step.
  for (const l of skipped) assert.ok(l >= 1 && l < perFrame!, `a skipped push ran ${l} loops`);
  assert.deepEqual(kept, kept.map(() => perFrame), "a kept push runs what an unfiltered one does, no second fit");
});

Deno.test({
  name: "similar-image filter tests: clean up",
  fn: async () => {
    engine.close();
    await Deno.remove(dir, { recursive: true });
  },
});
