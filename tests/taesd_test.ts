// TAESD (native "taesd" model): the golden case end to end, plus the error contract (wrong image
// sizes/channels, missing or unexpected weights) and shapes of non-square inputs.
import assert from "node:assert/strict";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { loadTaesd } from "../ffi/loaders/taesd.ts";
import { runCase } from "../scripts/golden.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";
import { rejectsWith } from "./_fixtures/assert_engine_error.ts";

const CASE_DIR = goldenPath("cases/taesd");
const MODEL_DIR = goldenPath("models/taesd");

Deno.test("taesd: golden case passes on the CPU backend", async () => {
  const lines: string[] = [];
  const summary = await runCase(CASE_DIR, { device: "cpu", precision: "fp32" }, (l) => lines.push(l));
  assert.ok(summary.passed, `${summary.error ?? ""}\n${lines.join("\n")}`);
  assert.deepEqual(
    summary.tensors.map((t) => t.name).sort(),
    ["decoded", "decoded_big_stride2", "encoded", "encoded_big"],
  );
});

Deno.test("taesd: shapes, non-square frames and input errors", async () => {
  using ctx = Context.create("cpu");
  using files = await loadTaesd(MODEL_DIR);
  using model = await Model.create(ctx, "taesd", files.config, files.weights);
  const run = async (method: string, name: string, shape: number[], out: string) => {
    using io = new TensorMap();
    io.setF32(name, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.25), shape);
    await model.run(method, io);
    return io.info(out).shape;
  };
  assert.deepEqual(await run("encode", "images", [1, 3, 16, 24], "latents"), [1, 4, 2, 3]);
  assert.deepEqual(await run("decode", "latents", [2, 4, 3, 1], "images"), [2, 3, 24, 8]);
  await rejectsWith(run("encode", "images", [1, 3, 60, 64], "latents"), "INVALID_ARGUMENT", "multiples of 8");
  await rejectsWith(run("encode", "images", [1, 3, 64, 20], "latents"), "INVALID_ARGUMENT", "multiples of 8");
  await rejectsWith(run("encode", "images", [1, 4, 64, 64], "latents"), "INVALID_ARGUMENT", "[N, 3, H, W]");
  await rejectsWith(run("encode", "images", [3, 64, 64], "latents"), "INVALID_ARGUMENT", "[N, 3, H, W]");
  await rejectsWith(run("decode", "latents", [1, 3, 8, 8], "images"), "INVALID_ARGUMENT", "[N, 4, h, w]");
  await rejectsWith(run("encode", "latents", [1, 3, 8, 8], "latents"), "NOT_FOUND", "images");
  await rejectsWith(run("nope", "latents", [1, 4, 8, 8], "images"), "NOT_FOUND", "nope");
  // Decoded values are 2y - 1 with y computed from ReLU outputs: never clamped, always finite.
  using io = new TensorMap();
  io.setF32("latents", new Float32Array(4 * 4).fill(50), [1, 4, 2, 2]);
  await model.run("decode", io);
  assert.ok(io.getF32("images").every(Number.isFinite));
});

Deno.test("taesd: a missing, misshaped, integer or unexpected weight is a clear EngineError", async () => {
  using ctx = Context.create("cpu");
  using files = await loadTaesd(MODEL_DIR);
  const w = files.weights;
  const kept = w.get("decoder.layers.18.bias");
  w.delete("decoder.layers.18.bias");
  await rejectsWith(Model.create(ctx, "taesd", files.config, w), "NOT_FOUND", "decoder.layers.18.bias");
  w.setF32("decoder.layers.18.bias", new Float32Array(4), [4]);
  await rejectsWith(Model.create(ctx, "taesd", files.config, w), "FORMAT", "decoder.layers.18.bias", "[4]", "[3]");
  w.setI64("decoder.layers.18.bias", [1, 2, 3], [3]); // right shape, integer dtype
  await rejectsWith(Model.create(ctx, "taesd", files.config, w), "FORMAT", "decoder.layers.18.bias", "I64");
  w.set("decoder.layers.18.bias", kept);
  w.setF32("encoder.layers.99.weight", new Float32Array(1), [1]);
  await rejectsWith(Model.create(ctx, "taesd", files.config, w), "FORMAT", "encoder.layers.99.weight");
  w.delete("encoder.layers.99.weight");
  await rejectsWith(Model.create(ctx, "taesd", { ...files.config, act_fn: "silu" }, w), "UNSUPPORTED", "silu");
  using ok = await Model.create(ctx, "taesd", files.config, w);
  assert.ok(!ok.closed);
});
