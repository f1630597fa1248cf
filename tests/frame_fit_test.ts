// Backend::image_fit_from_u8 on the CPU backend (the op the CUDA backend runs on the device) against
// the stream's host path (fit_frame: the same antialiased resize + centre crop in double
// precision, rounded to bytes): the two must agree within one 8-bit level at camera sizes.
import assert from "node:assert/strict";
import { EngineError } from "../ffi/errors.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";

/** A deterministic test frame: gradients, a one-pixel checkerboard, hard edges and noise per channel. */
function cameraFrame(h: number, w: number, c: number, seed: number): Uint8Array {
  const data = new Uint8Array(h * w * c);
  let s = seed >>> 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const o = (y * w + x) * c;
      data[o] = Math.round((255 * x) / (w - 1));
      data[o + 1] = (x + y) % 2 ? 250 : 0; // (0/255 would average to exact .5 ties)
      data[o + 2] = ((x >> 5) + (y >> 5)) % 2 ? (s >>> 24) : 40;
      if (c === 4) data[o + 3] = s & 255; // alpha: must be ignored
    }
  }
  return data;
}

function mapWith(frame: Uint8Array, h: number, w: number, c: number, size: number[]): TensorMap {
  const io = new TensorMap();
  io.set("frame", { dtype: "U8", shape: [h, w, c], data: frame });
  io.setI64("size", size, [2]);
  return io;
}

/** The stream's host path: U8 [oh, ow, c]. */
async function hostFit(model: Model, frame: Uint8Array, h: number, w: number, c: number, size: number[]) {
  using io = mapWith(frame, h, w, c, size);
  await model.run("fit_frame", io);
  return io.get("y").data;
}

/** Backend::image_fit_from_u8: float [1, 3, oh, ow]. */
async function opFit(model: Model, frame: Uint8Array, h: number, w: number, c: number, size: number[]) {
  using io = mapWith(frame, h, w, c, size);
  await model.run("image_fit_from_u8", io);
  return { shape: io.get("y").shape, data: io.getF32("y").slice() };
}

/** Levels of the device-style op ([1, 3, H, W] floats) vs the host path (U8 [H, W, C]). */
async function compare(model: Model, frame: Uint8Array, h: number, w: number, c: number, oh: number, ow: number) {
  const host = await hostFit(model, frame, h, w, c, [oh, ow]);
  const op = await opFit(model, frame, h, w, c, [oh, ow]);
  assert.deepEqual(op.shape, [1, 3, oh, ow]);
  let worst = 0, differing = 0;
  for (let ch = 0; ch < 3; ch++) {
    for (let p = 0; p < oh * ow; p++) {
      const level = op.data[ch * oh * ow + p]! * 255;
      assert.ok(Math.abs(level - Math.round(level)) < 1e-3, "the op returns whole levels / 255");
      const d = Math.abs(level - host[p * c + ch]!);
      worst = Math.max(worst, d);
      if (d > 0.5) differing++;
    }
  }
  return { worst, differing, total: 3 * oh * ow };
}

Deno.test("image_fit_from_u8 (CPU) matches the host frame fitting within one level at 720p and 1080p", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  for (const [h, w] of [[720, 1280], [1080, 1920]]) {
    const r = await compare(model, cameraFrame(h!, w!, 3, h!), h!, w!, 3, 512, 512);
    assert.ok(r.worst <= 1 + 1e-3, `${w}x${h}: worst ${r.worst} levels`);
    // float vs double weights only flip values that sit on a rounding boundary
    assert.ok(r.differing <= r.total / 1000, `${w}x${h}: ${r.differing} of ${r.total} values differ`);
  }
  // A non-square stream size and an upscale (small frame, RGBA).
  const r1 = await compare(model, cameraFrame(1080, 1920, 4, 3), 1080, 1920, 4, 512, 768);
  assert.ok(r1.worst <= 1 + 1e-3, `768x512 from 1080p RGBA: worst ${r1.worst}`);
  const r2 = await compare(model, cameraFrame(48, 64, 3, 5), 48, 64, 3, 512, 512);
  assert.ok(r2.worst <= 1 + 1e-3, `upscale: worst ${r2.worst}`);
});

Deno.test("image_fit_from_u8 ignores alpha and passes a frame of the stream size through exactly", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const rgba = cameraFrame(600, 800, 4, 9);
  const rgb = new Uint8Array(600 * 800 * 3);
  for (let p = 0; p < 600 * 800; p++) rgb.set(rgba.subarray(p * 4, p * 4 + 3), p * 3);
  const a = await opFit(model, rgba, 600, 800, 4, [256, 256]);
  const b = await opFit(model, rgb, 600, 800, 3, [256, 256]);
  assert.deepEqual(a.data, b.data);
  const same = await opFit(model, rgb, 600, 800, 3, [600, 800]);
  for (let ch = 0; ch < 3; ch++) {
    for (const p of [0, 1234, 600 * 800 - 1]) {
      assert.equal(same.data[ch * 600 * 800 + p], Math.fround(rgb[p * 3 + ch]! / 255));
    }
  }
});

Deno.test("image_fit_from_u8 rejects bad frames with typed errors", async () => {
  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "ops", {});
  const frame = new Uint8Array(4 * 4 * 2);
  await assert.rejects(() => opFit(model, frame, 4, 4, 2, [8, 8]), (e: unknown) => {
    assert.ok(e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /channels/.test(e.message), String(e));
    return true;
  });
  await assert.rejects(() => opFit(model, new Uint8Array(48), 4, 4, 3, [0, 8]), (e: unknown) => {
    assert.ok(e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /output size/.test(e.message), String(e));
    return true;
  });
});
