/**
 * The streaming hot path (`Stream.push`, one FFI call per frame) on CUDA with the per-frame step
 * captured as one CUDA graph (`L2D_CUDA_GRAPHS=1`) and with eager launches (`=0`), on the golden
 * pipeline case (issue 15). Each mode must reproduce the golden streamed frames (relative L2 <= 2e-2,
 * the golden harness's fp16 bound for pipeline frames), the graph mode must actually replay, and the
 * two modes must agree with each other. Prints one JSON line: per mode the frame path counters
 * (eager regions, captures, replays), host milliseconds per streamed frame (p50, p99) and the
 * errors; exits 1 when a check fails.
 *
 *   deno run -A scripts/gpu/stream_graphs.ts [--precision fp16|fp32] [--target sm_90] [--modes 1,0]
 *
 * (`--device cpu --target cpu` with L2D_CAPTURE_AUDIT=1 runs the same checks on the CPU capture audit.)
 *
 * gpu-check.sh runs it after the golden cases (L2D_GOLDEN_DIR: the regenerated golden root) and
 * once more under compute-sanitizer memcheck with graphs on.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { buildFromStyleConfig } from "../../engines/build.ts";
import type { EngineTarget } from "../../engines/format.ts";
import { Engine, type Stream } from "../../mod.ts";
import { openSafetensors } from "../../ffi/formats/mod.ts";
import { type ContextStats, TensorMap } from "../../ffi/native.ts";
import { launchesPerFrame } from "../bench/frame_counters.ts";
import { goldenPath } from "../../tests/_fixtures/golden_root.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    precision: { type: "string", default: "fp16" },
    target: { type: "string", default: "sm_90" },
    modes: { type: "string", default: "1,0" },
    device: { type: "string", default: "cuda" },
  },
});
const precision = values.precision as "fp16" | "fp32";
const device = values.device as "cuda" | "cpu";
const BOUND = 2e-2;

const CASE = goldenPath("cases/pipeline");
const caseJson = JSON.parse(await Deno.readTextFile(join(CASE, "case.json")));
const cfg = caseJson.config;
const dir = await Deno.makeTempDir({ prefix: "l2d_stream_graphs_" });
const enginePath = join(dir, "pipeline.l2de");
await buildFromStyleConfig(goldenPath(caseJson.model_files.live2diff_config.split(" ")[0]), {
  out: enginePath,
  target: values.target as EngineTarget,
  root: goldenPath("."),
  taesd: goldenPath(caseJson.model_files.vae.split(" ")[0]),
  depth: goldenPath(caseJson.model_files.depth_model.split(" ")[0]),
  motion: goldenPath(caseJson.model_files.motion_module.split(" ")[0]),
  quiet: true,
  log: () => {},
});
const inputs = await openSafetensors(join(CASE, "inputs.safetensors"));
const video = await inputs.read("video_u8"); // [N, H, W, 3]
inputs.close();
const outputs = await openSafetensors(join(CASE, "outputs.safetensors"));
const golden = await outputs.read("stream_frames_u8"); // [N - 8, H, W, 3]
outputs.close();
const [N, H, W] = video.shape as [number, number, number];
const size = H * W * 3;

function relL2(a: Uint8Array, b: Uint8Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1));
}
function maxAbs(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
async function framePath(s: Stream): Promise<Record<string, number | string>> {
  using io = new TensorMap();
  await s.session.run("frame_path", io);
  const out: Record<string, number | string> = {};
  for (const n of ["graph", "eager", "captures", "replays"]) out[n] = new Int32Array(io.get(n).data.slice().buffer)[0]!;
  out.path = new TextDecoder().decode(io.get("path").data); // "graph", "eager", "eager: <why the capture failed>"
  return out;
}

const report: Record<string, unknown> = { device, precision, frames: N };
const frames: Record<string, Uint8Array[]> = {};
const failures: string[] = [];
for (const mode of values.modes.split(",")) {
  Deno.env.set("L2D_CUDA_GRAPHS", mode); // read once per context, at Engine.load
  using engine = await Engine.load(enginePath, { device, precision });
  using stream = await engine.createStream({
    prompt: String(cfg.prompt),
    applyTemplate: false,
    width: Number(cfg.width),
    height: Number(cfg.height),
    tIndexList: cfg.t_index_list,
    seed: Number(cfg.noise_seed),
  });
  const outs: Uint8Array[] = [], ms: number[] = [];
  // Launches and copies per frame over the last 3 pushes (replays in graph mode).
  let before: ContextStats | null = null;
  for (let i = 0; i < N; i++) {
    if (i === N - 3) before = engine.stats();
    const t0 = performance.now();
    const o = await stream.push({
      data: video.data.subarray(i * size, (i + 1) * size),
      width: W,
      height: H,
      channels: 3,
    });
    if (i >= 8) ms.push(performance.now() - t0);
    if (o) outs.push(o.data.slice());
  }
  const latency = stream.latency;
  let worst = 0;
  outs.forEach((o, j) => {
    const k = j + latency; // golden row k is the output of frame 8 + k
    worst = Math.max(worst, relL2(o, golden.data.subarray(k * size, (k + 1) * size)));
  });
  const path = await framePath(stream);
  const stats = engine.stats();
  const perFrame = launchesPerFrame(before!, stats, 3);
  // Memory: the graph's idle intermediates are reported apart (graph_reserved_bytes) and in the peak.
  const memory = {
    bytes_in_use: stats.bytes_in_use,
    graph_reserved_bytes: stats.graph_reserved_bytes ?? null,
    peak_bytes: stats.peak_bytes,
  };
  const sorted = ms.slice(2).sort((a, b) => a - b); // after the eager and the capturing frame
  report[`graphs_${mode}`] = {
    path,
    outputs: outs.length,
    golden_rel_l2_max: worst,
    host_ms_p50: sorted[Math.floor(sorted.length / 2)] ?? null,
    host_ms_p99: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? null,
    per_frame: perFrame, // goal with graphs: graphs 1, kernels 0, copies = frame up + output down (+ error word)
    memory,
  };
  if (device === "cuda" && mode === "1" && Number(path.replays) > 0) {
    if (perFrame?.graphs !== 1) failures.push(`graphs=1: ${perFrame?.graphs} graph launches per replayed frame`);
    if (!((memory.graph_reserved_bytes ?? 0) > 0)) {
      failures.push(`graphs=1: graph_reserved_bytes ${memory.graph_reserved_bytes}`);
    }
    if (stats.peak_bytes < stats.bytes_in_use + (memory.graph_reserved_bytes ?? 0)) {
      failures.push(`peak_bytes ${stats.peak_bytes} < in use + graph reserved ${JSON.stringify(memory)}`);
    }
  }
  if (mode === "0" && (memory.graph_reserved_bytes ?? 0) !== 0) {
    failures.push(`graphs=0: graph_reserved_bytes ${memory.graph_reserved_bytes}`);
  }
  if (outs.length !== N - 8 - latency) failures.push(`graphs=${mode}: ${outs.length} outputs`);
  if (!(worst <= BOUND)) failures.push(`graphs=${mode}: golden rel-L2 ${worst} > ${BOUND}`);
  if (mode === "1" && !(Number(path.replays) > 0)) failures.push(`graphs=1 did not replay: ${JSON.stringify(path)}`);
  if (device === "cuda" && mode === "0" && path.captures !== 0) {
    failures.push(`graphs=0 captured: ${JSON.stringify(path)}`);
  }
  frames[mode] = outs;
}
Deno.env.delete("L2D_CUDA_GRAPHS");
if (frames["1"] && frames["0"]) {
  let rel = 0, abs = 0;
  frames["1"].forEach((o, j) => {
    rel = Math.max(rel, relL2(o, frames["0"]![j]!));
    abs = Math.max(abs, maxAbs(o, frames["0"]![j]!));
  });
  report.graph_vs_eager = { rel_l2_max: rel, max_abs: abs };
  if (!(rel <= BOUND)) failures.push(`graph vs eager rel-L2 ${rel} > ${BOUND}`);
}
report.failures = failures;
await Deno.remove(dir, { recursive: true }).catch(() => {});
console.log(JSON.stringify(report));
if (failures.length) Deno.exit(1);
