// The bench's per-layer-class report: rows per call from two counter snapshots, dense calls per
// frame, and the counters' absence on the CPU backend.
import assert from "node:assert/strict";
import { densePerFrame, type KernelInfo, kernelInfo, layerRows } from "../scripts/bench.ts";
import { Context } from "../ffi/native.ts";

function info(ops: KernelInfo["ops"]): KernelInfo {
  return {
    mode: "auto",
    precision: "fp16",
    default: "",
    cublasLt: null,
    cublasLt_why: "absent",
    cudnn: null,
    cudnn_why: "absent",
    profiling: true,
    ops,
  };
}

Deno.test("bench layers: rows are per call of the stage, busiest first, TFLOP/s = GFLOP / ms", () => {
  const before = info({ "conv3x3/64x64": { own: { calls: 10, gflop: 100, ms: 1 } } });
  const after = info({
    "conv3x3/64x64": { own: { calls: 30, gflop: 300, ms: 3 } },
    linear: { vendor: { calls: 40, gflop: 80, ms: 8 } },
  });
  const rows = layerRows(after, before, 2);
  assert.deepEqual(rows, [
    { class: "linear", path: "vendor", calls: 20, ms: 4, gflop: 40, tflops: 10 },
    { class: "conv3x3/64x64", path: "own", calls: 10, ms: 1, gflop: 100, tflops: 100 },
  ]);
});

Deno.test("bench layers: dense calls per frame by path", () => {
  const before = info({ linear: { vendor: { calls: 5, gflop: 1 } } });
  const after = info({
    linear: { vendor: { calls: 25, gflop: 5 }, simple: { calls: 4, gflop: 1 } },
    "conv1x1/8x8": { own: { calls: 6, gflop: 1 } },
  });
  assert.deepEqual(densePerFrame(after, before, 4), { vendor: 5, simple: 1, own: 1.5 });
});

Deno.test("bench layers: the CPU backend has no kernel counters", () => {
  using ctx = Context.create("cpu");
  const stats = ctx.stats();
  assert.ok("kernels" in stats, "l2d_context_stats reports a kernels field");
  assert.equal(kernelInfo(stats), null);
});
