/**
 * Backend::linear_geglu (the feed-forward's first projection with its GEGLU, one op) through the "ops"
 * model on the CPU backend:
 *  - against a naive double-precision computation, (x w[c] + b[c]) * gelu_erf(x w[C + c] + b[C + c]),
 *    for odd and even sizes, with and without bias, from one row to many and with leading dimensions;
 *  - bit for bit against linear followed by geglu (the CPU runs the composition);
 *  - typed errors for a weight that does not fit, an odd number of weight rows, a bias of the wrong size;
 *  - the UNet (tiny golden model, count_ops) calls it once per feed-forward instead of linear + geglu;
 *  - the CUDA dense test (test_cuda_dense) lists a linear_geglu case for every feed-forward shape of the
 *    dense shape table (--list, no GPU needed), and its small edge cases run with the CPU standing in.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { runNativeBin } from "./_fixtures/native_bin.ts";
import { streamedUnetOpCounts } from "./_fixtures/unet_op_counts.ts";

/** Deterministic values in [-1, 1) (a linear congruential generator: the test owns its data). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** erf by its Maclaurin series (|x| <= 5: far below float32 precision), +-1 beyond. */
function erf(x: number): number {
  if (Math.abs(x) > 5) return Math.sign(x);
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n;
    const t = term / (2 * n + 1);
    sum += t;
    if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
  }
  return sum * 2 / Math.sqrt(Math.PI);
}

/** The naive reference: y[m, c] over rows m of x [M, K], w [2C, K], bias [2C] or null. */
function naive(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  M: number,
  K: number,
  C: number,
): Float64Array {
  const y = new Float64Array(M * C);
  for (let m = 0; m < M; m++) {
    for (let c = 0; c < C; c++) {
      let v = b ? b[c]! : 0, g = b ? b[C + c]! : 0;
      for (let k = 0; k < K; k++) {
        v += x[m * K + k]! * w[c * K + k]!;
        g += x[m * K + k]! * w[(C + c) * K + k]!;
      }
      y[m * C + c] = v * 0.5 * g * (1 + erf(g / Math.SQRT2));
    }
  }
  return y;
}

async function run(model: Model, method: string, fill: (io: TensorMap) => void): Promise<Float32Array> {
  using io = new TensorMap();
  fill(io);
  await model.run(method, io);
  return io.getF32("y");
}

Deno.test("ops linear_geglu matches a naive GEGLU of the projection and linear + geglu bit for bit", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  // [leading dims of x], K, C: one row to many, odd and even sizes, C = 1, a 3-D x.
  const shapes: [number[], number, number][] = [
    [[1], 8, 4],
    [[1], 7, 1],
    [[5], 13, 9],
    [[37], 70, 45],
    [[64], 32, 40],
    [[2, 3], 11, 6],
  ];
  let seed = 1;
  for (const [lead, K, C] of shapes) {
    for (const bias of [true, false]) {
      const M = lead.reduce((a, d) => a * d, 1);
      const x = values(M * K, seed++), w = values(2 * C * K, seed++), b = bias ? values(2 * C, seed++) : null;
      const inputs = (io: TensorMap) => {
        io.setF32("x", x, [...lead, K]);
        io.setF32("w", w, [2 * C, K]);
        if (b) io.setF32("b", b, [2 * C]);
      };
      const what = `x [${lead}, ${K}], C ${C}, bias ${bias}`;
      const y = await run(model, "linear_geglu", inputs);
      const want = naive(x, w, b, M, K, C);
      assert.equal(y.length, M * C, what);
      let scale = 0;
      for (const v of want) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < y.length; i++) {
        // float32 sums of K products of values below 1 (and the bias): a few float32 ulps of the scale.
        assert.ok(
          Math.abs(y[i]! - want[i]!) <= 1e-6 * (K + 2) * Math.max(scale, 1),
          `${what}: y[${i}] = ${y[i]}, want ${want[i]}`,
        );
      }
      const lin = await run(model, "linear", inputs);
      const composed = await run(model, "geglu", (io) => io.setF32("x", lin, [...lead, 2 * C]));
      assert.deepEqual(y, composed, `${what}: not linear then geglu`);
    }
  }
});

Deno.test("ops linear_geglu refuses bad shapes with typed errors", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const cases: [number[], number[] | null, RegExp][] = [
    [[6, 7], null, /does not fit x/], // K 7 vs x's 6
    [[5, 6], null, /even, positive number of rows/],
    [[6, 6], [5], /"b" must be \[6\]/],
    [[6, 6], [2, 3], /"b" must be \[6\]/],
  ];
  for (const [wShape, bShape, message] of cases) {
    using io = new TensorMap();
    io.setF32("x", values(4 * 6, 3), [4, 6]);
    io.setF32("w", values(wShape[0]! * wShape[1]!, 4), wShape);
    if (bShape) io.setF32("b", values(bShape.reduce((a, d) => a * d, 1), 5), bShape);
    await assert.rejects(
      model.run("linear_geglu", io),
      (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && message.test(e.message),
      `w [${wShape}] b [${bShape}]`,
    );
  }
});

Deno.test("unet session: count_ops shows one linear_geglu per feed-forward, no linear + geglu pair", async () => {
  const { weights, count } = await streamedUnetOpCounts();
  // Independently from the checkpoint: every feed-forward (spatial and motion-module blocks).
  const ffs = [...weights.keys()].filter((n) => n.endsWith(".ff.net.0.proj.weight")).length;
  assert.ok(ffs > 0);
  assert.equal(count("linear_geglu"), ffs, "one linear_geglu per feed-forward");
  assert.equal(count("geglu"), 0, "no separate geglu left");
});

const dense = (args: string[], env: Record<string, string> = {}) => runNativeBin("test_cuda_dense", args, env);

Deno.test("test_cuda_dense has a linear_geglu case per feed-forward shape (--list, no GPU needed)", async () => {
  const table = await Deno.readTextFile(fileURLToPath(new URL("../cuda/tests/dense_shapes.txt", import.meta.url)));
  const ffs = table.split("\n").filter((l) => l.startsWith("linear ") && l.includes(".ff.net.0.proj "));
  assert.ok(ffs.length >= 8, "the table lost its feed-forward rows");
  const { code, text } = await dense(["--list"]);
  assert.equal(code, 0, text);
  for (const row of ffs) {
    const [, tag, M, K, N] = row.split(/\s+/);
    const label = `linear_geglu/${M}x${K}x${N}/${tag}`;
    const line = text.split("\n").find((l) => l.startsWith(label + " "));
    assert.ok(line, `no case ${label} in:\n${text}`);
    assert.match(line, new RegExp(`\\bC=${Number(N) / 2}\\b`), line);
  }
});

Deno.test("test_cuda_dense linear_geglu edge cases run with the CPU standing in for CUDA", async () => {
  const { code, text } = await dense(["--small", "--filter", "linear_geglu/edge"], { L2D_TEST_SELF: "1" });
  assert.equal(code, 0, text);
  assert.match(text, /test_cuda_dense: 5 cases in [\d.]+ s: all ok/);
});
