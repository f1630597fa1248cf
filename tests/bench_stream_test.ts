// The stream bench end to end in its quickest mode on the CPU (tiny default engine): the JSON's
// schema, finite numbers and their consistency (p99 >= p50, fps = frames / timed seconds, per-frame
// counters from the native counters), the --compare mode on two real summaries, and the native
// counters behind it (launches, push times, stage profiling on and off). No timing thresholds.
import assert from "node:assert/strict";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { native, readCString } from "../ffi/library.ts";
import { compareSummaries, readSummary } from "../scripts/bench/compare.ts";
import { launchesPerFrame, pushTimes, stageMsPerFrame } from "../scripts/bench/frame_counters.ts";
import { parseConcurrency } from "../scripts/bench.ts";

const deno = Deno.execPath();
const bench = new URL("../scripts/bench.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(deno, { args: ["run", "-A", bench, ...args], stdout: "piped", stderr: "piped" })
    .output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const finite = (v: unknown, what: string) => {
  assert.equal(typeof v, "number", `${what} is not a number: ${v}`);
  assert.ok(Number.isFinite(v as number), `${what} is not finite: ${v}`);
  return v as number;
};

// deno-lint-ignore no-explicit-any
type Any = any;

Deno.test("bench --quick on the CPU: schema, finite numbers, consistent figures; --compare of two runs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await run(["--device", "cpu", "--quick"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 2, "the partial line (before the concurrency part), then the summary");
    const partial: Any = JSON.parse(lines[0]!);
    assert.match(partial.partial, /before the concurrency part/);
    const s: Any = JSON.parse(lines[1]!);
    assert.deepEqual(partial.configs, s.configs, "the same single-stream results (--quick runs no separate stages)");
    assert.equal(s.bench, "live2diff-stream");
    assert.equal(s.device, "cpu");
    assert.match(s.stage_clock, /wall clock/);
    assert.equal(s.configs.length, 1);
    const c = s.configs[0];
    assert.deepEqual([c.width, c.height, c.steps], [64, 64, 2]);
    assert.equal(c.frames, 2);
    assert.equal(c.native_frames, 2);
    for (const k of ["fps", "p50_ms", "p99_ms", "mean_ms", "timed_seconds", "native_p50_ms", "backend_peak_bytes"]) {
      finite(c[k], k);
    }
    assert.ok(c.p99_ms >= c.p50_ms, `p99 ${c.p99_ms} < p50 ${c.p50_ms}`);
    assert.ok(c.backend_peak_bytes >= c.backend_in_use_bytes && c.backend_in_use_bytes > 0);
    assert.equal(c.backend_graph_reserved_bytes, 0, "the CPU captures no graphs");
    // fps = frames / seconds of the timed public pushes (both rounded in the JSON).
    assert.ok(
      Math.abs(c.fps - c.frames / c.timed_seconds) <= 0.01 * c.fps + 0.01,
      `fps ${c.fps} vs ${c.timed_seconds}`,
    );
    // Counters per timed push (2 public + 2 native): the CPU issues loops, never kernels or graphs.
    const l = c.launches_per_frame;
    assert.ok(l, "launches_per_frame missing");
    assert.ok(finite(l.cpu_loops_stand_in, "cpu loops") > 0);
    assert.deepEqual([l.kernels, l.vendor_calls, l.graphs, l.graph_kernels, l.captured_kernels, l.syncs], [
      0,
      0,
      0,
      0,
      0,
      0,
    ]);
    assert.equal(l.host_issued, l.cpu_loops_stand_in);
    // Copies apart from the launches: at least the frame up and the output down; no graphs on the CPU.
    assert.ok(finite(l.copies, "copies") >= 1, `copies ${l.copies}`);
    assert.deepEqual([l.graph_copies, l.captured_copies], [0, 0]);
    const p = c.push_ms;
    assert.equal(p.pushes, 4);
    assert.equal(p.device_wait_ms, 0, "the CPU backend never waits for a device");
    assert.ok(Math.abs(p.host_ms - (p.wall_ms - p.device_wait_ms)) <= 0.002);
    assert.ok(p.wall_ms > 0 && p.thread_cpu_ms >= 0);
    // Stages timed inside the profiled push: all four and their sum.
    const st = c.stage_ms_per_frame;
    assert.equal(c.profiled_frames, 1);
    assert.deepEqual(Object.keys(st).sort(), ["decode", "depth", "encode", "sum", "unet"]);
    for (const [k, v] of Object.entries(st)) assert.ok(finite(v, `stage ${k}`) > 0, `stage ${k} = ${v}`);
    const parts = st.encode + st.depth + st.unet + st.decode;
    assert.ok(Math.abs(st.sum - parts) <= 0.005, `sum ${st.sum} != ${parts}`);
    // Two streams at once on the engine.
    assert.equal(s.concurrent.length, 1);
    const k = s.concurrent[0];
    assert.equal(k.streams, 2);
    assert.equal(k.outputs, 2 * 2);
    assert.ok(k.p99_ms >= k.p50_ms);
    assert.ok(Math.abs(k.fps - k.outputs / k.seconds) <= 0.01 * k.fps + 0.01);
    assert.ok(Math.abs(k.fps_per_stream - k.fps / 2) <= 0.01);
    assert.ok(k.launches_per_frame.cpu_loops_stand_in > 0);
    // The human table went to stderr.
    assert.match(r.stderr, /host ms/);

    // --compare: a summary against itself gives ratio 1 everywhere; the CLI prints one JSON line.
    const a = `${dir}/a.json`;
    await Deno.writeTextFile(a, r.stdout);
    const same = compareSummaries(await readSummary(a), await readSummary(a));
    assert.deepEqual(same.rows.map((row) => row.key), ["64x64 T=2", "2 streams 64x64 T=2"]);
    for (const row of same.rows) for (const x of row.ratios) assert.equal(x.ratio, x.before === 0 ? null : 1, x.metric);
    const cmp = await run(["--compare", a, a]);
    assert.equal(cmp.code, 0, cmp.stderr);
    const j: Any = JSON.parse(cmp.stdout.trim().split("\n").pop()!);
    assert.equal(j.compare, "live2diff-bench");
    assert.equal(j.rows.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --compare: ratios after / before per matched configuration", () => {
  const before = {
    configs: [{ width: 512, height: 512, steps: 2, fps: 20, p50_ms: 50, launches_per_frame: { host_issued: 1900 } }],
    concurrent: [{ streams: 2, width: 512, height: 512, steps: 2, fps: 30 }],
  };
  const after = {
    configs: [
      {
        width: 512,
        height: 512,
        steps: 2,
        fps: 50,
        p50_ms: 20,
        launches_per_frame: { host_issued: 3 },
        stage_ms_per_frame: { unet: 4 },
      },
      { width: 768, height: 512, steps: 2, fps: 30 },
    ],
    concurrent: [{ streams: 2, width: 512, height: 512, steps: 2, fps: 60 }],
  };
  const { rows, unmatched } = compareSummaries(before, after);
  assert.deepEqual(unmatched, ["768x512 T=2"]);
  const get = (key: string, metric: string) =>
    rows.find((r) => r.key === key)!.ratios.find((x) => x.metric === metric)?.ratio;
  assert.equal(get("512x512 T=2", "fps"), 2.5);
  assert.equal(get("512x512 T=2", "p50_ms"), 0.4);
  assert.equal(get("512x512 T=2", "launches_per_frame.host_issued"), 0.002);
  assert.equal(get("512x512 T=2", "stage_ms_per_frame.unet"), undefined, "no before value: not compared");
  assert.equal(get("2 streams 512x512 T=2", "fps"), 2);
});

Deno.test("bench frame counters: per-frame differences of two stats snapshots", () => {
  const zero = {
    kernels: 0,
    vendor_calls: 0,
    graphs: 0,
    graph_kernels: 0,
    captured_kernels: 0,
    cpu_loops: 0,
    syncs: 0,
  };
  const a = {
    backend: "cuda",
    bytes_in_use: 0,
    peak_bytes: 0,
    launches: { ...zero, kernels: 100, vendor_calls: 10 },
    push: { calls: 2, wall_ms: 10, device_wait_ms: 4, thread_cpu_ms: 9 },
    stages_ms: { unet: { calls: 2, ms: 6 } },
  };
  const b = {
    ...a,
    launches: {
      ...zero,
      kernels: 100,
      vendor_calls: 10,
      graphs: 4,
      graph_kernels: 4000,
      captured_kernels: 1000,
      syncs: 8,
      copies: 12,
      graph_copies: 8,
      captured_copies: 2,
    },
    push: { calls: 6, wall_ms: 30, device_wait_ms: 16, thread_cpu_ms: 29 },
    stages_ms: { unet: { calls: 6, ms: 18 }, decode: { calls: 4, ms: 2 } },
  };
  assert.deepEqual(launchesPerFrame(a, b, 4), {
    kernels: 0,
    vendor_calls: 0,
    graphs: 1,
    graph_kernels: 1000,
    captured_kernels: 250,
    cpu_loops_stand_in: 0,
    syncs: 2,
    host_issued: 1,
    copies: 3,
    graph_copies: 2,
    captured_copies: 0.5,
  });
  assert.deepEqual(pushTimes(a, b), { pushes: 4, wall_ms: 5, device_wait_ms: 3, host_ms: 2, thread_cpu_ms: 5 });
  assert.deepEqual(stageMsPerFrame(a, b), { unet: 3, decode: 0.5, sum: 3.5 });
  assert.equal(stageMsPerFrame(a, a), null, "nothing timed in between");
  assert.equal(launchesPerFrame({ backend: "cpu", bytes_in_use: 0, peak_bytes: 0 }, b, 4), null, "old library");
  assert.equal(launchesPerFrame(a, { ...a, launches: zero }, 1)!.copies, 0, "a library without copy counts: 0");
  assert.deepEqual(parseConcurrency("2, 4"), [2, 4]);
  assert.deepEqual(parseConcurrency(""), []);
  assert.throws(() => parseConcurrency("2,x"), /--concurrency/);
});

Deno.test("context stats: launches and device waits are counted per context; stage profiling toggles", async () => {
  using ctx = Context.create("cpu", { threads: 2 });
  using other = Context.create("cpu", { threads: 2 });
  const s0 = ctx.stats();
  assert.equal(s0.stage_profiling, false);
  assert.equal(s0.graph_reserved_bytes, 0, "reported, 0 on the CPU (no graphs)");
  assert.deepEqual(s0.stages_ms, {});
  assert.deepEqual(s0.push, { calls: 0, wall_ms: 0, device_wait_ms: 0, thread_cpu_ms: 0 });
  using model = await Model.create(ctx, "ops", {});
  using io = new TensorMap();
  io.setF32("x", new Float32Array(1 << 16).map((_, i) => i - 30000), [1 << 16]);
  io.setF32("params", new Float32Array([1, 0, 0]), [3]); // Unary::Relu
  await model.run("unary", io);
  const s1 = ctx.stats();
  assert.ok(s1.launches!.cpu_loops > s0.launches!.cpu_loops, "a CPU op runs at least one pool loop");
  assert.equal(s1.launches!.kernels, 0);
  assert.equal(s1.launches!.copies! - s0.launches!.copies!, 2, "x up, y down: two copies, not launches");
  assert.equal(s1.device_wait_ms, 0);
  assert.equal(other.stats().launches!.cpu_loops, 0, "the other context's counters are its own");
  ctx.profileStages(true);
  assert.equal(ctx.stats().stage_profiling, true);
  ctx.profileStages(false);
  assert.equal(ctx.stats().stage_profiling, false);
  // Anything but 0 or 1 is refused with a typed status and a message, never ignored.
  assert.equal(native().l2d_context_profile(ctx.rawHandle(), 2), 1 /* L2D_ERR_INVALID_ARGUMENT */);
  assert.match(readCString(native().l2d_last_error()), /stages must be 0 or 1, got 2/);
});
