// The native core through the FFI: tensor round trips, the error contract (typed errors, closed and
// busy handles), native Philox vs the TS implementation, and every CPU-backend op against an
// independent naive TS computation (the oracle's own oracle).
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { backendAvailable, Context, Model, TensorMap } from "../ffi/native.ts";
import { philoxNormal, philoxWeight } from "../ffi/philox.ts";

function rand(n: number, seed: number): Float32Array {
  return philoxNormal([n], seed, 7, 0);
}

function assertClose(actual: Float32Array, expected: ArrayLike<number>, tol: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  assert.ok(worst <= tol, `${what}: max abs error ${worst} > ${tol}`);
}

async function runOp(
  model: Model,
  method: string,
  inputs: Record<string, [ArrayLike<number>, number[]] | number[]>,
) {
  using io = new TensorMap();
  const intNames = new Set(["pe_idx", "update_idx", "ids"]);
  for (const [name, v] of Object.entries(inputs)) {
    const [values, shape] = Array.isArray(v) && v.length === 2 && Array.isArray(v[1])
      ? [v[0] as ArrayLike<number>, v[1] as number[]]
      : [v as number[], [(v as number[]).length]];
    if (intNames.has(name) || Array.from(values).every(Number.isInteger) && !Array.isArray(v[1])) {
      io.setI64(name, values, shape);
    } else {
      io.setF32(name, Float32Array.from(values), shape);
    }
  }
  await model.run(method, io);
  return {
    y: io.getF32("y"),
    shape: io.info("y").shape,
    io: io.names().includes("cache_out") ? io.getF32("cache_out") : null,
  };
}

Deno.test("native: a tensor round-trips TS -> native -> TS bit-exactly", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  using io = new TensorMap();
  const x = new Float32Array([0, -0, 1.5, -3.25e-30, 65504, Infinity, -Infinity]);
  io.setF32("x", x, [7]);
  io.setI64("ids", [1, -2, 2 ** 40], [3]);
  await model.run("identity", io);
  assert.deepEqual(Array.from(io.getF32("y")), Array.from(x));
  const ids = io.get("ids");
  assert.equal(ids.dtype, "I64");
  assert.deepEqual(Array.from(new BigInt64Array(ids.data.buffer)), [1n, -2n, 2n ** 40n]);
});

Deno.test("native: errors are typed, never crashes", async () => {
  using ctx = Context.create("cpu");
  assert.throws(() => Context.create("tpu" as "cpu"), TypeError);
  await assert.rejects(
    Model.create(ctx, "no-such-model", {}),
    (e: unknown) => e instanceof EngineError && e.code === "NOT_FOUND",
  );
  using model = await Model.create(ctx, "ops", {});
  using io = new TensorMap();
  assert.throws(() => io.set("bad", { dtype: "F32", shape: [4], data: new Uint8Array(3) }), RangeError);
  await assert.rejects(
    model.run("identity", io),
    (e: unknown) => e instanceof EngineError && /needs tensor "x"/.test(e.message),
  );
  io.setF32("x", new Float32Array(6), [2, 3]);
  io.setF32("w", new Float32Array(6), [3, 2]); // K mismatch: 3 vs 2 -> internal shape check, not a crash
  await assert.rejects(model.run("linear", io), EngineError);
  io.setI64("ids", [5], [1]);
  io.setF32("table", new Float32Array(8), [4, 2]);
  await assert.rejects(
    model.run("embedding", io),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT",
  );
  if (!backendAvailable("cuda")) {
    assert.throws(
      () => Context.create("cuda"),
      (e: unknown) => e instanceof EngineError && e.code === "UNSUPPORTED",
    );
  }
});

Deno.test("native: close is idempotent, use after close and concurrent calls are clear errors", async () => {
  const ctx = Context.create("cpu");
  const model = await Model.create(ctx, "ops", {});
  const io = new TensorMap();
  io.setF32("x", new Float32Array(1 << 16), [1 << 16]);
  const first = model.run("identity", io);
  await assert.rejects(
    model.run("identity", io),
    (e: unknown) => e instanceof EngineError && e.code === "BUSY",
  );
  await first;
  ctx.close(); // the model keeps its backend alive
  await model.run("identity", io);
  model.close();
  model.close();
  await assert.rejects(
    model.run("identity", io),
    (e: unknown) => e instanceof EngineError && e.code === "CLOSED",
  );
  io.close();
  assert.throws(() => io.names(), (e: unknown) => e instanceof EngineError && e.code === "CLOSED");
});

Deno.test("native: Philox normal and weight draws match the TS implementation bit-exactly", () => {
  using map = new TensorMap();
  map.setPhilox("n", [3, 37], { kind: "normal", seed: 3001, stream: 3, draw: 11 });
  assert.deepEqual(Array.from(map.getF32("n")), Array.from(philoxNormal([3, 37], 3001, 3, 11)));
  for (
    const [name, shape] of [["conv_in.weight", [8, 4, 3, 3]], ["a.norm1.weight", [5]], ["a.bias", [
      7,
    ]]] as const
  ) {
    map.setPhilox(name, [...shape], { kind: "weight", seed: 1001 });
    assert.deepEqual(Array.from(map.getF32(name)), Array.from(philoxWeight(name, shape, 1001)), name);
  }
});

// ---- naive references ----

function conv2dRef(
  x: Float32Array,
  [N, C, H, W]: number[],
  w: Float32Array,
  [O, , KH, KW]: number[],
  b: Float32Array | null,
  [sh, sw, pt, pb, pl, pr]: number[],
) {
  const Ho = Math.floor((H + pt + pb - KH) / sh) + 1, Wo = Math.floor((W + pl + pr - KW) / sw) + 1;
  const y = new Float32Array(N * O * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = b ? b[o]! : 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < KH; ky++) {
              for (let kx = 0; kx < KW; kx++) {
                const iy = oy * sh - pt + ky, ix = ox * sw - pl + kx;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                  s += x[((n * C + c) * H + iy) * W + ix]! * w[((o * C + c) * KH + ky) * KW + kx]!;
                }
              }
            }
          }
          y[((n * O + o) * Ho + oy) * Wo + ox] = s;
        }
      }
    }
  }
  return { y, shape: [N, O, Ho, Wo] };
}

function attentionRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  Lq: number,
  Lk: number,
  HD: number,
  heads: number,
  causal: boolean,
) {
  const D = HD / heads, y = new Float32Array(B * Lq * HD);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < Lq; i++) {
        const s: number[] = [];
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) {
            dot += q[(b * Lq + i) * HD + h * D + d]! * k[(b * Lk + j) * HD + h * D + d]!;
          }
          s.push(causal && j > i ? -Infinity : dot / Math.sqrt(D));
        }
        const m = Math.max(...s), e = s.map((t) => Math.exp(t - m)), z = e.reduce((a, c) => a + c, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++) acc += (e[j]! / z) * v[(b * Lk + j) * HD + h * D + d]!;
          y[(b * Lq + i) * HD + h * D + d] = acc;
        }
      }
    }
  }
  return y;
}

Deno.test("cpu ops: conv2d (stride, asymmetric padding, 1x1, chunked im2col) matches a naive convolution", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (
    const [xs, ws, p] of [
      [[2, 3, 9, 7], [5, 3, 3, 3], [1, 1, 1, 1, 1, 1]],
      [[1, 4, 10, 10], [6, 4, 3, 3], [2, 2, 0, 1, 0, 1]], // TF "SAME" for stride 2
      [[2, 8, 5, 6], [7, 8, 1, 1], [1, 1, 0, 0, 0, 0]],
      [[1, 3, 16, 16], [4, 3, 7, 7], [2, 2, 3, 3, 3, 3]],
    ] as const
  ) {
    const x = rand(xs.reduce((a: number, c) => a * c, 1), 1),
      w = rand(ws.reduce((a: number, c) => a * c, 1), 2),
      b = rand(ws[0], 3);
    const got = await runOp(model, "conv2d", {
      x: [x, [...xs]],
      w: [w, [...ws]],
      b: [b, [ws[0]]],
      params: [...p],
    });
    const ref = conv2dRef(x, [...xs], w, [...ws], b, [...p]);
    assert.deepEqual(got.shape, ref.shape);
    assertClose(got.y, ref.y, 1e-4, `conv2d ${xs} ${ws}`);
  }
});

Deno.test("cpu ops: linear, matmul and attention (plain, causal, broadcast k/v) match naive math", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const x = rand(3 * 5 * 70, 4), w = rand(33 * 70, 5), b = rand(33, 6);
  const lin = await runOp(model, "linear", { x: [x, [3, 5, 70]], w: [w, [33, 70]], b: [b, [33]] });
  const ref = new Float32Array(15 * 33);
  for (let m = 0; m < 15; m++) {
    for (let n = 0; n < 33; n++) {
      let s = b[n]!;
      for (let k = 0; k < 70; k++) s += x[m * 70 + k]! * w[n * 70 + k]!;
      ref[m * 33 + n] = s;
    }
  }
  assert.deepEqual(lin.shape, [3, 5, 33]);
  assertClose(lin.y, ref, 1e-4, "linear");

  for (
    const [B, Lq, Lk, HD, heads, causal] of [[2, 70, 70, 16, 2, 0], [1, 77, 77, 24, 3, 1], [
      3,
      9,
      130,
      8,
      1,
      0,
    ]]
  ) {
    const q = rand(B! * Lq! * HD!, 8), k = rand(B! * Lk! * HD!, 9), v = rand(B! * Lk! * HD!, 10);
    const got = await runOp(model, "attention", {
      q: [q, [B!, Lq!, HD!]],
      k: [k, [B!, Lk!, HD!]],
      v: [v, [B!, Lk!, HD!]],
      params: [heads!, causal!],
    });
    assertClose(
      got.y,
      attentionRef(q, k, v, B!, Lq!, Lk!, HD!, heads!, causal === 1),
      1e-5,
      `attention ${B},${Lq},${Lk}`,
    );
  }
});

Deno.test("cpu ops: group_norm(+silu), layer_norm, geglu, unary and broadcast binary", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const [N, C, S, G] = [2, 6, 10, 3];
  const x = rand(N * C * S, 11), g = rand(C, 12), bt = rand(C, 13);
  const gn = await runOp(
    model,
    "group_norm",
    { x: [x, [N, C, 2, 5]], gamma: [g, [C]], beta: [bt, [C]], params: [G, 1e-5, 1] } as never,
  );
  const ref = new Float32Array(x.length), cg = C / G;
  for (let n = 0; n < N; n++) {
    for (let grp = 0; grp < G; grp++) {
      const vals = Array.from(x.subarray((n * C + grp * cg) * S, (n * C + (grp + 1) * cg) * S));
      const mean = vals.reduce((a, c) => a + c, 0) / vals.length;
      const vr = vals.reduce((a, c) => a + (c - mean) ** 2, 0) / vals.length;
      for (let c = grp * cg; c < (grp + 1) * cg; c++) {
        for (let s = 0; s < S; s++) {
          const t = ((x[(n * C + c) * S + s]! - mean) / Math.sqrt(vr + 1e-5)) * g[c]! + bt[c]!;
          ref[(n * C + c) * S + s] = t / (1 + Math.exp(-t));
        }
      }
    }
  }
  assertClose(gn.y, ref, 1e-5, "group_norm+silu");

  const ge = await runOp(model, "geglu", { x: [x, [10, 12]] });
  const geRef = new Float32Array(60);
  const erf = (z: number) => { // Abramowitz-Stegun 7.1.26 is too coarse; use a series for |z|<3
    let sum = 0, term = z;
    for (let n = 0; n < 60; n++) {
      sum += term / (2 * n + 1);
      term *= -z * z / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  };
  for (let r = 0; r < 10; r++) {
    for (let j = 0; j < 6; j++) {
      const a = x[r * 12 + j]!, gt = x[r * 12 + 6 + j]!;
      geRef[r * 6 + j] = a * 0.5 * gt * (1 + erf(gt / Math.SQRT2));
    }
  }
  assertClose(ge.y, geRef, 1e-5, "geglu");

  const a = rand(2 * 3 * 4, 14), bb = rand(3 * 1, 15);
  const bin = await runOp(model, "binary", { a: [a, [2, 3, 4]], b: [bb, [3, 1]], op: [2] } as never);
  const binRef = Array.from(a, (v, i) => Math.fround(v * bb[Math.floor(i / 4) % 3]!));
  assertClose(bin.y, binRef, 0, "binary mul broadcast");

  const un = await runOp(model, "unary", { x: [a, [24]], params: [7, 2, -1] } as never); // Affine 2x-1
  assertClose(un.y, Array.from(a, (v) => 2 * v - 1), 1e-6, "affine");
});

Deno.test("cpu ops: resampling, pooling, transposed conv and layout ops match naive math", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const x = rand(2 * 5 * 6, 16);
  // bilinear align_corners=True from 5x6 to 9x11, checked at the corners and one interior point
  const ac = await runOp(model, "resize_bilinear", { x: [x, [1, 2, 5, 6]], size: [9, 11, 1] });
  assert.equal(ac.y[0], x[0]);
  assert.ok(Math.abs(ac.y[8 * 11 + 10]! - x[4 * 6 + 5]!) < 1e-6);
  const sy = 4 * 4 / 8, sx = 5 * 5 / 10; // dst (4,5) -> src (2, 2.5)
  const interior = (x[2 * 6 + 2]! + x[2 * 6 + 3]!) / 2;
  assert.ok(Math.abs(ac.y[4 * 11 + 5]! - interior) < 1e-6, `${sy},${sx}`);
  // align_corners=False downscale by 2 averages 2x2 blocks exactly
  const x4 = rand(16, 17);
  const dn = await runOp(model, "resize_bilinear", { x: [x4, [1, 1, 4, 4]], size: [2, 2, 0] });
  assertClose(
    dn.y,
    [0, 2, 8, 10].map((i) => (x4[i]! + x4[i + 1]! + x4[i + 4]! + x4[i + 5]!) / 4),
    1e-6,
    "bilinear /2",
  );
  const up = await runOp(model, "upsample_nearest", { x: [x4, [1, 1, 4, 4]], size: [8, 8] });
  assert.equal(up.y[5 * 8 + 3], x4[2 * 4 + 1]);
  const mp = await runOp(model, "max_pool2d", { x: [x4, [1, 1, 4, 4]], params: [3, 2, 0, 1, 0, 1] });
  assert.deepEqual(mp.shape, [1, 1, 2, 2]);
  assert.equal(mp.y[3], Math.max(x4[10]!, x4[11]!, x4[14]!, x4[15]!));
  // transposed conv with stride == kernel scatters x * w blocks
  const w = rand(2 * 3 * 2 * 2, 18), xb = rand(2 * 2 * 2, 19);
  const ct = await runOp(model, "conv_transpose2d", {
    x: [xb, [1, 2, 2, 2]],
    w: [w, [2, 3, 2, 2]],
    stride: [2],
  });
  assert.deepEqual(ct.shape, [1, 3, 4, 4]);
  const o = 1, yy = 3, xx = 2; // source pixel (1,1), kernel tap (1,0)
  const expect = xb[0 * 4 + 1 * 2 + 1]! * w[((0 * 3 + o) * 2 + 1) * 2 + 0]! +
    xb[1 * 4 + 1 * 2 + 1]! * w[((1 * 3 + o) * 2 + 1) * 2 + 0]!;
  assert.ok(Math.abs(ct.y[(o * 4 + yy) * 4 + xx]! - expect) < 1e-6);
  // permute [2,3,4] -> [4,2,3]
  const p = rand(24, 20);
  const pm = await runOp(model, "permute", { x: [p, [2, 3, 4]], perm: [2, 0, 1] });
  assert.equal(pm.y[(3 * 2 + 1) * 3 + 2], p[(1 * 3 + 2) * 4 + 3]);
  const sl = await runOp(model, "slice", { x: [p, [2, 3, 4]], params: [2, 1, 4, 2] });
  assert.deepEqual(Array.from(sl.y), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23].map((i) => p[i]!));
  const mm = await runOp(model, "minmax_normalize", { x: [[3, 1, 2, 5], [4]] });
  assert.deepEqual(Array.from(mm.y), [0.5, 0, 0.25, 1]);
});

Deno.test("cpu ops: stream_temporal_attention writes the ring slot in place and attends with PE and bias", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const [R, P, W, C, heads, L] = [2, 3, 16, 8, 2, 24];
  const q = rand(R * P * C, 21), k = rand(R * P * C, 22), v = rand(R * P * C, 23);
  const cache = rand(R * 2 * P * W * C, 24),
    qpe = rand(L * C, 25),
    kpe = rand(L * C, 26),
    vpe = rand(L * C, 27);
  const peIdx = Array.from({ length: R * W }, (_, i) => (i * 5) % L), upd = [8, 3];
  const bias = Array.from({ length: R * W }, (_, i) => (i % W) > 10 && i < W ? -Infinity : 0);
  const got = await runOp(model, "stream_temporal_attention", {
    q: [q, [R, P, C]],
    k: [k, [R, P, C]],
    v: [v, [R, P, C]],
    cache: [cache, [R, 2, P, W, C]],
    qpe: [qpe, [L, C]],
    kpe: [kpe, [L, C]],
    vpe: [vpe, [L, C]],
    pe_idx: [peIdx, [R, W]] as never,
    update_idx: [upd, [R]] as never,
    bias: [bias, [R, W]],
    heads: [heads],
  });
  const D = C / heads, newCache = Float32Array.from(cache);
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let c = 0; c < C; c++) {
        newCache[(((r * 2 + 0) * P + p) * W + upd[r]!) * C + c] = k[(r * P + p) * C + c]!;
        newCache[(((r * 2 + 1) * P + p) * W + upd[r]!) * C + c] = v[(r * P + p) * C + c]!;
      }
    }
  }
  assert.deepEqual(Array.from(got.io!), Array.from(newCache));
  const ref = new Float32Array(R * P * C);
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let h = 0; h < heads; h++) {
        const qi = peIdx[r * W + upd[r]!]!;
        const s: number[] = [];
        for (let t = 0; t < W; t++) {
          let dot = 0;
          for (let d = h * D; d < (h + 1) * D; d++) {
            dot += (q[(r * P + p) * C + d]! + qpe[qi * C + d]!) *
              (newCache[(((r * 2) * P + p) * W + t) * C + d]! + kpe[peIdx[r * W + t]! * C + d]!);
          }
          s.push(dot / Math.sqrt(D) + bias[r * W + t]!);
        }
        const m = Math.max(...s), e = s.map((z) => Math.exp(z - m)), zs = e.reduce((a, c) => a + c, 0);
        for (let d = h * D; d < (h + 1) * D; d++) {
          let acc = 0;
          for (let t = 0; t < W; t++) {
            acc += (e[t]! / zs) *
              (newCache[(((r * 2 + 1) * P + p) * W + t) * C + d]! + vpe[peIdx[r * W + t]! * C + d]!);
          }
          ref[(r * P + p) * C + d] = acc;
        }
      }
    }
  }
  assertClose(got.y, ref, 1e-5, "stream_temporal_attention");
});

Deno.test("stream frame fitting: covers the stream size, antialiases downscales, crops the centre", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const fit = async (data: Uint8Array, h: number, w: number, c: number, size: [number, number]) => {
    using io = new TensorMap();
    io.set("frame", { dtype: "U8", shape: [h, w, c], data });
    io.setI64("size", size, [2]);
    await model.run("fit_frame", io);
    return io.get("y");
  };
  // Same size: untouched.
  const same = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37) % 256);
  assert.deepEqual(Array.from((await fit(same, 8, 8, 3, [8, 8])).data), Array.from(same));
  // 1280x720 -> 64x64: channel 0 a horizontal ramp, channel 1 a one-pixel checkerboard.
  const W = 1280, H = 720;
  const big = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) big.set([Math.round((255 * x) / (W - 1)), (x + y) % 2 ? 255 : 0, 7], (y * W + x) * 3);
  }
  const out = await fit(big, H, W, 3, [64, 64]);
  assert.deepEqual(out.shape, [64, 64, 3]);
  const px = (y: number, x: number, c: number) => out.data[(y * 64 + x) * 3 + c]!;
  // Antialiasing averages the checkerboard to mid-grey instead of aliasing it to black or white.
  for (const [y, x] of [[0, 0], [31, 17], [63, 63]]) {
    assert.ok(Math.abs(px(y!, x!, 1) - 127.5) <= 3, `checker ${px(y!, x!, 1)}`);
  }
  // Centre crop of the covering 114x64 resize: the ramp covers only the middle 64/114 of its range.
  const expectedLeft = 255 * ((114 - 64) / 2 / 114), expectedRight = 255 * (1 - (114 - 64) / 2 / 114);
  assert.ok(Math.abs(px(32, 0, 0) - expectedLeft) <= 4, `left ${px(32, 0, 0)} vs ${expectedLeft}`);
  assert.ok(Math.abs(px(32, 63, 0) - expectedRight) <= 4, `right ${px(32, 63, 0)} vs ${expectedRight}`);
  for (let x = 1; x < 64; x++) assert.ok(px(10, x, 0) >= px(10, x - 1, 0), "the ramp stays monotonic");
  assert.equal(px(5, 5, 2), 7); // a constant channel stays exact
  // Upscaling a 4x2 RGBA frame to 8x8 keeps the alpha channel count and covers the output.
  const up = await fit(new Uint8Array(4 * 2 * 4).fill(200), 2, 4, 4, [8, 8]);
  assert.deepEqual(up.shape, [8, 8, 4]);
  assert.ok(up.data.every((v) => v === 200));
});
