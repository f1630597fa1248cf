/**
 * The packed-QKV attention ops (one QKV projection) through the "ops" model on the CPU backend:
 * self_attention(qkv [B, L, 3C]) is bit-identical to attention() of the three column blocks
 * q = qkv[..., 0:C], k = [C:2C], v = [2C:3C] (the CPU reads them in place with a row stride of
 * 3C, the GEMMs pack their operands), and close to a naive TS attention;
 * stream_temporal_attention_qkv is bit-identical to stream_temporal_attention of the three blocks,
 * output and in-place cache update alike. Bad shapes are typed errors.
 */
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { philoxNormal } from "../ffi/philox.ts";

function rand(n: number, seed: number, scale = 1): Float32Array {
  return philoxNormal([n], seed, 11, 0).map((x) => x * scale);
}

/** Column block j (of 3) of packed rows [rows, 3C] as a contiguous [rows, C]. */
function block(qkv: Float32Array, rows: number, C: number, j: number): Float32Array {
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) out.set(qkv.subarray(r * 3 * C + j * C, r * 3 * C + (j + 1) * C), r * C);
  return out;
}

type Inputs = Record<string, [Float32Array | number[], number[], "f32" | "i64"]>;

async function run(model: Model, method: string, inputs: Inputs) {
  using io = new TensorMap();
  for (const [name, [values, shape, kind]] of Object.entries(inputs)) {
    if (kind === "i64") io.setI64(name, values, shape);
    else io.setF32(name, Float32Array.from(values), shape);
  }
  await model.run(method, io);
  return { y: io.getF32("y"), cache: io.names().includes("cache_out") ? io.getF32("cache_out") : null };
}

/** softmax(q k^T / sqrt(D) [+ causal]) v per head, in float64. */
function naiveAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  L: number,
  C: number,
  heads: number,
  causal: boolean,
): Float64Array {
  const D = C / heads, y = new Float64Array(B * L * C);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < L; i++) {
        const n = causal ? i + 1 : L, s = new Float64Array(n);
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let d = h * D; d < (h + 1) * D; d++) dot += q[(b * L + i) * C + d]! * k[(b * L + j) * C + d]!;
          s[j] = dot / Math.sqrt(D);
        }
        const m = Math.max(...s);
        let z = 0;
        for (let j = 0; j < n; j++) z += s[j] = Math.exp(s[j]! - m);
        for (let d = h * D; d < (h + 1) * D; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += s[j]! * v[(b * L + j) * C + d]!;
          y[(b * L + i) * C + d] = acc / z;
        }
      }
    }
  }
  return y;
}

Deno.test("ops self_attention equals attention of the three column blocks, bit for bit", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  // Odd sizes: L = 70 spans two 64-query blocks; D = 5 and 16.
  for (const [B, L, heads, D, causal] of [[2, 70, 3, 5, false], [1, 77, 2, 16, true], [3, 9, 1, 8, false]] as const) {
    const C = heads * D;
    const qkv = rand(B * L * 3 * C, 100 + L, 1.5);
    const packed = await run(model, "self_attention", {
      qkv: [qkv, [B, L, 3 * C], "f32"],
      params: [[heads, causal ? 1 : 0], [2], "i64"],
    });
    const [q, k, v] = [0, 1, 2].map((j) => block(qkv, B * L, C, j));
    const sliced = await run(model, "attention", {
      q: [q!, [B, L, C], "f32"],
      k: [k!, [B, L, C], "f32"],
      v: [v!, [B, L, C], "f32"],
      params: [[heads, causal ? 1 : 0], [2], "i64"],
    });
    assert.deepEqual(packed.y, sliced.y, `B ${B} L ${L} heads ${heads} D ${D} causal ${causal}`);
    const want = naiveAttention(q!, k!, v!, B, L, C, heads, causal);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(packed.y[i]! - want[i]!));
    assert.ok(worst < 2e-5, `naive attention: max abs error ${worst}`);
  }
});

Deno.test("ops stream_temporal_attention_qkv equals the unpacked op (output and cache), bit for bit", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const [R, P, W, C, heads, maxLen] = [2, 5, 16, 12, 3, 24];
  const qkv = rand(R * P * 3 * C, 31, 1.5);
  const cache = rand(R * 2 * P * W * C, 32);
  const common: Inputs = {
    cache: [cache, [R, 2, P, W, C], "f32"],
    qpe: [rand(maxLen * C, 33, 0.5), [maxLen, C], "f32"],
    kpe: [rand(maxLen * C, 34, 0.5), [maxLen, C], "f32"],
    vpe: [rand(maxLen * C, 35, 0.5), [maxLen, C], "f32"],
    pe_idx: [Array.from({ length: R * W }, (_, i) => (i * 7) % maxLen), [R, W], "i64"],
    update_idx: [[9, 4], [R], "i64"],
    // Row 0 masks its last slots (a filling window), row 1 attends to all 16.
    bias: [Array.from({ length: R * W }, (_, i) => (i < W && i > 12 ? -Infinity : 0)), [R, W], "f32"],
    heads: [[heads], [1], "i64"],
  };
  const packed = await run(model, "stream_temporal_attention_qkv", { ...common, qkv: [qkv, [R, P, 3 * C], "f32"] });
  const [q, k, v] = [0, 1, 2].map((j) => block(qkv, R * P, C, j));
  const sliced = await run(model, "stream_temporal_attention", {
    ...common,
    q: [q!, [R, P, C], "f32"],
    k: [k!, [R, P, C], "f32"],
    v: [v!, [R, P, C], "f32"],
  });
  assert.deepEqual(packed.y, sliced.y, "y");
  assert.deepEqual(packed.cache, sliced.cache, "cache_out");
  // The k block (not q or v) went into slot update_idx[0] of row 0, pixel 0.
  assert.deepEqual(packed.cache!.subarray(9 * C, 10 * C), k!.subarray(0, C));
  assert.notDeepEqual(packed.cache, cache, "the cache was written in place");
});

Deno.test("ops packed attention refuses channels that are not 3C or not divisible by the heads", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const reject = (method: string, inputs: Inputs, pattern: RegExp) =>
    assert.rejects(
      run(model, method, inputs),
      (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message),
    );
  await reject("self_attention", { qkv: [rand(2 * 4 * 10, 1), [2, 4, 10], "f32"], params: [[1, 0], [2], "i64"] }, /3C/);
  await reject(
    "self_attention",
    { qkv: [rand(2 * 4 * 12, 1), [2, 4, 12], "f32"], params: [[3, 0], [2], "i64"] },
    /not divisible by 3 heads/,
  );
  await reject("stream_temporal_attention_qkv", {
    qkv: [rand(1 * 2 * 12, 1), [1, 2, 12], "f32"],
    cache: [rand(1 * 2 * 2 * 16 * 8, 2), [1, 2, 2, 16, 8], "f32"],
    heads: [[1], [1], "i64"],
  }, /"cache" must be \[1, 2, 2, 16, 4\]/);
});
