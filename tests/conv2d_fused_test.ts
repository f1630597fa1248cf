/**
 * Backend::conv2d_fused (convolution + bias [O] + image bias [N, O] or [1, O] + residual in one op:
 * the UNet resnet's conv1 + time embedding and conv2 + skip) through the "ops" model on the CPU
 * backend: against a naive TS convolution, bit for bit against conv2d followed by binary Adds (the
 * CPU adds the biases and the residual in its bias pass, same roundings in the same order), and bad
 * shapes are typed errors.
 */
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { philoxNormal } from "../ffi/philox.ts";

type Params = [number, number, number, number, number, number]; // stride h/w, pad top/bottom/left/right

type ImageBias = "none" | "image" | "one"; // none, [N, O] or [1, O]

/** conv(x, w)[n, o] + bias[o] + imageBias[n or 0, o] + residual, summed in float64. */
function naiveConvFused(
  x: Float32Array,
  [N, C, H, W]: number[],
  w: Float32Array,
  [O, , KH, KW]: number[],
  bias: Float32Array | null,
  imageBias: Float32Array | null,
  imageBiasRows: number,
  residual: Float32Array | null,
  [sh, sw, pt, pb, pl, pr]: Params,
): { y: Float32Array; shape: number[] } {
  const Ho = Math.floor((H! + pt + pb - KH!) / sh) + 1, Wo = Math.floor((W! + pl + pr - KW!) / sw) + 1;
  const y = new Float32Array(N! * O! * Ho * Wo);
  for (let n = 0; n < N!; n++) {
    for (let o = 0; o < O!; o++) {
      const b = (bias ? bias[o]! : 0) + (imageBias ? imageBias[(imageBiasRows === 1 ? 0 : n) * O! + o]! : 0);
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = 0;
          for (let c = 0; c < C!; c++) {
            for (let ky = 0; ky < KH!; ky++) {
              for (let kx = 0; kx < KW!; kx++) {
                const iy = oy * sh - pt + ky, ix = ox * sw - pl + kx;
                if (iy >= 0 && iy < H! && ix >= 0 && ix < W!) {
                  s += x[((n * C! + c) * H! + iy) * W! + ix]! * w[((o * C! + c) * KH! + ky) * KW! + kx]!;
                }
              }
            }
          }
          const i = ((n * O! + o) * Ho + oy) * Wo + ox;
          y[i] = s + b + (residual ? residual[i]! : 0);
        }
      }
    }
  }
  return { y, shape: [N!, O!, Ho, Wo] };
}

const prod = (s: number[]) => s.reduce((a, c) => a * c, 1);

async function run(model: Model, method: string, fill: (io: TensorMap) => void): Promise<Float32Array> {
  using io = new TensorMap();
  fill(io);
  await model.run(method, io);
  return io.getF32("y");
}

// [x shape, w shape, params, bias [O], image bias, residual]
const cases: [number[], number[], Params, boolean, ImageBias, boolean][] = [
  [[3, 5, 9, 7], [6, 5, 3, 3], [1, 1, 1, 1, 1, 1], true, "image", true], // every term
  [[3, 5, 9, 7], [6, 5, 3, 3], [1, 1, 1, 1, 1, 1], true, "image", false], // resnet conv1, stream
  [[4, 5, 9, 7], [6, 5, 3, 3], [1, 1, 1, 1, 1, 1], true, "one", false], // resnet conv1, warmup (B = 1)
  [[2, 5, 9, 7], [6, 5, 3, 3], [1, 1, 1, 1, 1, 1], true, "none", true], // resnet conv2 + skip
  [[2, 8, 5, 6], [7, 8, 1, 1], [1, 1, 0, 0, 0, 0], false, "image", true], // pointwise
  [[1, 4, 10, 10], [6, 4, 3, 3], [2, 2, 0, 1, 0, 1], false, "none", true], // TF "SAME" stride 2
];

const rowsOf = (kind: ImageBias, N: number) => kind === "image" ? N : 1;

Deno.test("ops conv2d_fused matches a naive convolution + bias + image bias + residual", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (const [xs, ws, p, withBias, imageKind, withResidual] of cases) {
    const x = philoxNormal([prod(xs)], 31, 1, 0), w = philoxNormal([prod(ws)], 31, 2, 0);
    const O = ws[0]!, rows = rowsOf(imageKind, xs[0]!);
    const bias = withBias ? philoxNormal([O], 31, 3, 0) : null;
    const imageBias = imageKind === "none" ? null : philoxNormal([rows * O], 31, 5, 0);
    const outShape = naiveConvFused(x, xs, w, ws, null, null, 1, null, p).shape;
    const r = withResidual ? philoxNormal([prod(outShape)], 31, 4, 0) : null;
    const got = await run(model, "conv2d_fused", (io) => {
      io.setF32("x", x, xs);
      io.setF32("w", w, ws);
      if (bias) io.setF32("b", bias, [O]);
      if (imageBias) io.setF32("bn", imageBias, [rows, O]);
      if (r) io.setF32("r", r, outShape);
      io.setI64("params", p, [6]);
    });
    const ref = naiveConvFused(x, xs, w, ws, bias, imageBias, rows, r, p).y;
    const what = `${xs} ${ws} bias ${withBias} image bias ${imageKind} residual ${withResidual}`;
    assert.equal(got.length, ref.length, what);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!));
    assert.ok(worst <= 1e-4, `${what}: max abs error ${worst}`);
  }
});

Deno.test("ops conv2d_fused equals conv2d then binary Adds, bit for bit", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (const [xs, ws, p, withBias, imageKind, withResidual] of cases) {
    const outShape =
      naiveConvFused(new Float32Array(prod(xs)), xs, new Float32Array(prod(ws)), ws, null, null, 1, null, p).shape;
    const [N, O, Ho, Wo] = outShape as [number, number, number, number];
    const rows = rowsOf(imageKind, N);
    const inputs = (io: TensorMap) => {
      io.setPhilox("x", xs, { kind: "normal", seed: 41, stream: 1 });
      io.setPhilox("w", ws, { kind: "normal", seed: 41, stream: 2 });
      if (withBias) io.setPhilox("b", [O], { kind: "normal", seed: 41, stream: 3 });
      io.setI64("params", p, [6]);
    };
    const fused = await run(model, "conv2d_fused", (io) => {
      inputs(io);
      if (imageKind !== "none") io.setPhilox("bn", [rows, O], { kind: "normal", seed: 41, stream: 5 });
      if (withResidual) io.setPhilox("r", outShape, { kind: "normal", seed: 41, stream: 4 });
    });
    // The composition: conv2d with the bias, then + the image bias, then + the residual.
    let y = await run(model, "conv2d", inputs);
    const conv = y;
    if (imageKind !== "none") {
      const partial = y;
      y = await run(model, "binary", (io) => {
        io.setF32("a", partial, [N, O, Ho * Wo]);
        io.setPhilox("b", [rows, O, 1], { kind: "normal", seed: 41, stream: 5 }); // the values of [rows, O]
        io.setF32("op", new Float32Array([0]), [1]); // Binary::Add
      });
    }
    if (withResidual) {
      const partial = y;
      y = await run(model, "binary", (io) => {
        io.setF32("a", partial, outShape);
        io.setPhilox("b", outShape, { kind: "normal", seed: 41, stream: 4 });
        io.setF32("op", new Float32Array([0]), [1]);
      });
    }
    const what = `${xs} ${ws} bias ${withBias} image bias ${imageKind} residual ${withResidual}`;
    assert.deepEqual(fused, y, what);
    assert.notDeepEqual(fused, conv, `${what}: the image bias / residual were added`);
  }
});

Deno.test("ops conv2d_fused refuses a bias, image bias, residual or weight of the wrong shape with a typed error", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const attempt = async (fill: (io: TensorMap) => void, pattern: RegExp) => {
    using io = new TensorMap();
    io.setPhilox("x", [2, 3, 6, 6], { kind: "normal", seed: 1 });
    io.setPhilox("w", [4, 3, 3, 3], { kind: "normal", seed: 1 });
    io.setI64("params", [1, 1, 1, 1, 1, 1], [6]);
    fill(io);
    await assert.rejects(
      model.run("conv2d_fused", io),
      (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message),
    );
  };
  await attempt((io) => io.setPhilox("b", [2, 4], { kind: "normal", seed: 1 }), /"b" must be \[4\]/);
  await attempt((io) => io.setPhilox("bn", [3, 4], { kind: "normal", seed: 1 }), /"bn" must be \[2, 4\] or \[1, 4\]/);
  await attempt((io) => io.setPhilox("bn", [4], { kind: "normal", seed: 1 }), /"bn" must be \[2, 4\] or \[1, 4\]/);
  await attempt(
    (io) => io.setPhilox("r", [2, 4, 6, 5], { kind: "normal", seed: 1 }),
    /"r" must have the output shape \[2, 4, 6, 6\]/,
  );
  await attempt((io) => io.setPhilox("w", [4, 2, 3, 3], { kind: "normal", seed: 1 }), /does not fit the channels/);
});
