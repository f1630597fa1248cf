/**
 * Backend::linear_add (linear + residual in one op, the residual connections of the UNet's
 * transformer blocks) through the "ops" model on the CPU backend: bit-identical to linear followed
 * by binary Add (the CPU oracle adds the residual in the bias pass, same roundings in the same
 * order), with and without bias, and a residual of the wrong shape is a typed error.
 */
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";

async function run(model: Model, method: string, fill: (io: TensorMap) => void): Promise<Float32Array> {
  using io = new TensorMap();
  fill(io);
  await model.run(method, io);
  return io.getF32("y");
}

Deno.test("ops linear_add equals linear then binary Add, bit for bit", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (const bias of [true, false]) {
    const [M, K, N] = [37, 70, 45]; // odd sizes: edges of the GEMM tiles
    const inputs = (io: TensorMap) => {
      io.setPhilox("x", [M, K], { kind: "normal", seed: 21, stream: 1 });
      io.setPhilox("w", [N, K], { kind: "normal", seed: 21, stream: 2 });
      if (bias) io.setPhilox("b", [N], { kind: "normal", seed: 21, stream: 3 });
    };
    const fused = await run(model, "linear_add", (io) => {
      inputs(io);
      io.setPhilox("r", [M, N], { kind: "normal", seed: 21, stream: 4 });
    });
    const lin = await run(model, "linear", inputs);
    const pair = await run(model, "binary", (io) => {
      io.setF32("a", lin, [M, N]);
      io.setPhilox("b", [M, N], { kind: "normal", seed: 21, stream: 4 });
      io.setF32("op", new Float32Array([0]), [1]); // Binary::Add
    });
    assert.deepEqual(fused, pair, `bias ${bias}`);
    assert.notDeepEqual(fused, lin, "the residual was added");
  }
});

Deno.test("ops linear_add refuses a residual of another shape with a typed error", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  using io = new TensorMap();
  io.setPhilox("x", [4, 6], { kind: "normal", seed: 1 });
  io.setPhilox("w", [5, 6], { kind: "normal", seed: 1 });
  io.setPhilox("r", [4, 6], { kind: "normal", seed: 1 });
  await assert.rejects(
    model.run("linear_add", io),
    (e: unknown) =>
      e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /output shape \[4, 5\]/.test(e.message),
  );
  io.setPhilox("w", [5, 7], { kind: "normal", seed: 1 });
  await assert.rejects(
    model.run("linear_add", io),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /does not fit x/.test(e.message),
  );
});
