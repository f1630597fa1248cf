// The per-frame state ops a captured CUDA graph of the stream step relies on, on the CPU backend:
// - random_normal_counter / counter_add: noise whose Philox draw index is read from a device
//   counter must equal the TS Philox reference at counter + offset; the counter advances in place;
// - kv_advance: the KV-cache bookkeeping rule applied in place must follow Live2Diff's
//   update_attn_bias (re-implemented here from kv_cache.h) frame after frame.
import assert from "node:assert/strict";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { philoxNormal } from "../ffi/philox.ts";

async function draw(model: Model, counter: number, params: [number, number, number, number], shape: number[]) {
  using io = new TensorMap();
  io.setI64("counter", [counter], [1]);
  io.setI64("params", params, [4]);
  io.setI64("shape", shape, [shape.length]);
  await model.run("random_normal_counter", io);
  const out = io.get("counter_out");
  assert.equal(out.dtype, "I32");
  return { y: io.getF32("y").slice(), counter: new Int32Array(out.data.buffer, out.data.byteOffset, 1)[0]! };
}

Deno.test("random_normal_counter draws normal(shape, seed, stream, counter + offset); counter_add advances it", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (const [counter, seed, stream, offset, add] of [[8, 42, 1, 0, 1], [1000, 7, 3, 5, -2], [0, 0, 2, 0, 0]]) {
    const shape = [2, 4, 8, 8];
    const r = await draw(model, counter!, [seed!, stream!, offset!, add!], shape);
    assert.deepEqual(Array.from(r.y), Array.from(philoxNormal(shape, seed!, stream!, counter! + offset!)));
    assert.equal(r.counter, counter! + add!);
  }
});

/** Live2Diff's initial bookkeeping and update rule (kv_cache.h), independently in TS. */
function initState(R: number, W: number, S: number) {
  const bias = new Float32Array(R * W).fill(-Infinity), pe: number[] = [], upd: number[] = [];
  for (let r = 0; r < R; r++) {
    for (let s = 0; s < W; s++) {
      pe.push(s);
      if (s < S) bias[r * W + s] = 0;
    }
    upd.push(r === 1 ? S + 1 : S);
  }
  bias[S] = 0;
  return { bias, pe, upd };
}
function advance(st: ReturnType<typeof initState>, R: number, W: number, S: number) {
  for (let r = 0; r < R; r++) {
    const row = st.bias.subarray(r * W, (r + 1) * W);
    const zeros = row.filter((b) => b === 0).length;
    if (zeros < W) {
      st.upd[r] = zeros;
    } else {
      const pe = st.pe.slice(r * W, (r + 1) * W);
      const rolled = [...pe.slice(0, S), pe[W - 1]!, ...pe.slice(S, W - 1)];
      st.pe.splice(r * W, W, ...rolled);
      st.upd[r] = rolled.indexOf(Math.max(...rolled));
    }
    row.fill(0, 0, Math.min(zeros + 1, W));
  }
}

Deno.test("kv_advance applies Live2Diff's bookkeeping rule in place, through the warm-up and the rolling PEs", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const R = 3, W = 16, S = 8;
  const start = initState(R, W, S);
  for (const times of [1, 7, 8, 9, 16, 23, 40]) {
    const want = initState(R, W, S);
    for (let i = 0; i < times; i++) advance(want, R, W, S);
    using io = new TensorMap();
    io.setF32("bias", start.bias, [R, W]);
    io.setI64("pe_idx", start.pe, [R, W]);
    io.setI64("update_idx", start.upd, [R]);
    io.setI64("params", [S, times], [2]);
    await model.run("kv_advance", io);
    const i32 = (name: string) => {
      const t = io.get(name);
      return Array.from(new Int32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4));
    };
    assert.deepEqual(Array.from(io.getF32("y")), Array.from(want.bias), `bias after ${times}`);
    assert.deepEqual(i32("pe_idx_out"), want.pe, `pe_idx after ${times}`);
    assert.deepEqual(i32("update_idx_out"), want.upd, `update_idx after ${times}`);
  }
});
