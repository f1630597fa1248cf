/**
 * The transformer-boundary ops through the "ops" model on the CPU backend:
 *  - group_norm_tokens(x [N, C, H, W]) = group_norm written as tokens [N, H*W, C]: checked against a
 *    naive float64 group norm in TS (values) and bit for bit against group_norm then permute;
 *  - linear_to_image(t [N, P, K], w, b, r, H, W) = linear(t) viewed as [N, H, W, O], permuted to
 *    NCHW (+ r): checked against a naive float64 product in TS and bit for bit against linear,
 *    permute and binary Add (the CPU backend specialises both ops; they must not change a bit);
 *  - bad arguments are typed errors.
 */
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";

type Fill = (io: TensorMap) => void;

async function run(model: Model, method: string, fill: Fill): Promise<Float32Array> {
  using io = new TensorMap();
  fill(io);
  await model.run(method, io);
  return io.getF32("y");
}

async function philox(model: Model, shape: number[], stream: number): Promise<Float32Array> {
  return await run(model, "identity", (io) => io.setPhilox("x", shape, { kind: "normal", seed: 15, stream }));
}

function assertClose(got: Float32Array, want: Float64Array, tol: number, what: string) {
  assert.equal(got.length, want.length, what);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  assert.ok(worst <= tol, `${what}: max relative error ${worst} > ${tol}`);
}

Deno.test("ops group_norm_tokens is group_norm written as tokens [N, HW, C]", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const [N, C, H, W, G] = [2, 12, 5, 7, 4], S = H * W, cg = C / G;
  const x = await philox(model, [N, C, H, W], 1);
  const gamma = await philox(model, [C], 2), beta = await philox(model, [C], 3);
  for (const silu of [false, true]) {
    const inputs: Fill = (io) => {
      io.setF32("x", x, [N, C, H, W]);
      io.setF32("gamma", gamma, [C]);
      io.setF32("beta", beta, [C]);
      io.setF32("params", new Float32Array([G, 1e-6, silu ? 1 : 0]), [3]);
    };
    const tokens = await run(model, "group_norm_tokens", inputs);

    // Naive: float64 statistics per (n, group), biased variance; output index [n, s, c].
    const want = new Float64Array(N * S * C);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < G; g++) {
        let sum = 0, sq = 0;
        for (let c = g * cg; c < (g + 1) * cg; c++) for (let s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
        const mean = sum / (cg * S);
        for (let c = g * cg; c < (g + 1) * cg; c++) {
          for (let s = 0; s < S; s++) sq += (x[(n * C + c) * S + s] - mean) ** 2;
        }
        const rstd = 1 / Math.sqrt(sq / (cg * S) + 1e-6);
        for (let c = g * cg; c < (g + 1) * cg; c++) {
          for (let s = 0; s < S; s++) {
            const v = (x[(n * C + c) * S + s] - mean) * rstd * gamma[c] + beta[c];
            want[(n * S + s) * C + c] = silu ? v / (1 + Math.exp(-v)) : v;
          }
        }
      }
    }
    assertClose(tokens, want, 1e-5, `silu ${silu}`);

    const image = await run(model, "group_norm", inputs);
    const permuted = await run(model, "permute", (io) => {
      io.setF32("x", image, [N, C, S]);
      io.setI64("perm", [0, 2, 1], [3]);
    });
    assert.deepEqual(tokens, permuted, `bit for bit against group_norm then permute (silu ${silu})`);
  }
});

Deno.test("ops linear_to_image is linear on tokens written as NCHW, plus the residual", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  // Odd sizes (edges of the GEMM tiles in both roles), with few pixels and with many (the CPU's two
  // forms: linear's GEMM + a transposing pass, or the weight as A writing NCHW in place).
  for (const [N, H, W, K, O] of [[2, 5, 7, 37, 45], [2, 24, 25, 21, 19]]) {
    await checkLinearToImage(model, N, H, W, K, O);
  }
});

async function checkLinearToImage(model: Model, N: number, H: number, W: number, K: number, O: number) {
  const P = H * W;
  const t = await philox(model, [N, P, K], 4), w = await philox(model, [O, K], 5);
  const b = await philox(model, [O], 6), r = await philox(model, [N, O, H, W], 7);
  for (const [bias, residual] of [[true, true], [true, false], [false, true], [false, false]]) {
    const what = `[${N}, ${O}, ${H}, ${W}] K=${K}, bias ${bias}, residual ${residual}`;
    const y = await run(model, "linear_to_image", (io) => {
      io.setF32("t", t, [N, P, K]);
      io.setF32("w", w, [O, K]);
      if (bias) io.setF32("b", b, [O]);
      if (residual) io.setF32("r", r, [N, O, H, W]);
      io.setI64("hw", [H, W], [2]);
    });

    const want = new Float64Array(N * O * P);
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < O; o++) {
        for (let p = 0; p < P; p++) {
          let acc = bias ? b[o] : 0;
          for (let k = 0; k < K; k++) acc += t[(n * P + p) * K + k] * w[o * K + k];
          const at = (n * O + o) * P + p;
          want[at] = acc + (residual ? r[at] : 0);
        }
      }
    }
    assertClose(y, want, 1e-5, what);

    const lin = await run(model, "linear", (io) => {
      io.setF32("x", t, [N, P, K]);
      io.setF32("w", w, [O, K]);
      if (bias) io.setF32("b", b, [O]);
    });
    let composed = await run(model, "permute", (io) => {
      io.setF32("x", lin, [N, H, W, O]);
      io.setI64("perm", [0, 3, 1, 2], [4]);
    });
    if (residual) {
      composed = await run(model, "binary", (io) => {
        io.setF32("a", composed, [N, O, H, W]);
        io.setF32("b", r, [N, O, H, W]);
        io.setF32("op", new Float32Array([0]), [1]); // Binary::Add
      });
    }
    assert.deepEqual(y, composed, `bit for bit against linear, permute, Add (${what})`);
  }
}

Deno.test("ops group_norm_tokens and linear_to_image refuse bad arguments with typed errors", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const invalid = (pattern: RegExp) => (e: unknown) =>
    e instanceof EngineError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message);
  {
    using io = new TensorMap();
    io.setPhilox("x", [1, 6, 2, 2], { kind: "normal", seed: 1 });
    io.setPhilox("gamma", [6], { kind: "normal", seed: 2 });
    io.setPhilox("beta", [5], { kind: "normal", seed: 3 });
    io.setF32("params", new Float32Array([3, 1e-5, 0]), [3]);
    await assert.rejects(model.run("group_norm_tokens", io), invalid(/must have 6 values/));
    io.setPhilox("beta", [6], { kind: "normal", seed: 3 });
    io.setF32("params", new Float32Array([4, 1e-5, 0]), [3]);
    await assert.rejects(model.run("group_norm_tokens", io), invalid(/not divisible by 4 groups/));
  }
  {
    using io = new TensorMap();
    io.setPhilox("t", [2, 6, 4], { kind: "normal", seed: 1 });
    io.setPhilox("w", [3, 4], { kind: "normal", seed: 2 });
    io.setI64("hw", [2, 4], [2]);
    await assert.rejects(model.run("linear_to_image", io), invalid(/2 x 4 pixels do not match the 6 tokens/));
    io.setI64("hw", [2, 3], [2]);
    io.setPhilox("w", [3, 5], { kind: "normal", seed: 2 });
    await assert.rejects(model.run("linear_to_image", io), invalid(/does not fit t/));
    io.setPhilox("w", [3, 4], { kind: "normal", seed: 2 });
    io.setPhilox("b", [4], { kind: "normal", seed: 3 });
    await assert.rejects(model.run("linear_to_image", io), invalid(/"b" must be \[3\]/));
    io.setPhilox("b", [3], { kind: "normal", seed: 3 });
    io.setPhilox("r", [2, 3, 3, 2], { kind: "normal", seed: 4 });
    await assert.rejects(model.run("linear_to_image", io), invalid(/output shape \[2, 3, 2, 3\]/));
    io.setI64("hw", [0, 3], [2]);
    await assert.rejects(model.run("linear_to_image", io), invalid(/height must be 1\.\.16384/));
  }
});
