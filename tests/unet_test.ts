/**
 * The Live2Diff UNet on the CPU backend: the golden cases unet_warmup / unet_stream, and the KV-cache
 * bookkeeping of a session checked against an independent TS transcription of golden README item 8.
 * Uses the tiny golden model (L2D_GOLDEN_DIR overrides the golden root).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCase } from "../scripts/golden.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";
import { EngineError } from "../ffi/errors.ts";
import { toFloat32 } from "../ffi/host_tensor.ts";
import {
  loadUnetWeights,
  motionKey,
  readUnetConfig,
  type UnetModelConfig,
  unetModelConfig,
} from "../ffi/loaders/unet.ts";
import { Context, Model, type Session, TensorMap } from "../ffi/native.ts";

const quiet = () => {};

for (const name of ["unet_warmup", "unet_stream"]) {
  Deno.test(`golden ${name} passes on the CPU backend`, async () => {
    const s = await runCase(goldenPath(`cases/${name}`), { device: "cpu", precision: "fp32" }, quiet);
    assert.ok(s.passed, s.error ?? JSON.stringify(s.tensors.filter((t) => !t.pass)));
  });
}

// ---- an independent transcription of README item 8 ----

interface Bookkeeping {
  bias: number[][];
  pe: number[][];
  update: number[];
}

function initial(T: number, W = 16, S = 8): Bookkeeping {
  const bias = Array.from(
    { length: T },
    (_, r) => Array.from({ length: W }, (_, s) => (s < S || (r === 0 && s === S) ? 0 : -Infinity)),
  );
  const pe = Array.from({ length: T }, () => Array.from({ length: W }, (_, s) => s));
  const update = Array.from({ length: T }, (_, r) => (r === 1 ? S + 1 : S));
  return { bias, pe, update };
}

function updated(b: Bookkeeping, S = 8): Bookkeeping {
  const out: Bookkeeping = { bias: b.bias.map((r) => [...r]), pe: b.pe.map((r) => [...r]), update: [...b.update] };
  for (let r = 0; r < out.bias.length; r++) {
    const W = out.bias[r]!.length;
    const zeros = out.bias[r]!.filter((v) => v === 0).length;
    if (out.bias[r]!.some((v) => v === -Infinity)) {
      out.update[r] = zeros;
    } else {
      const tail = out.pe[r]!.slice(S);
      out.pe[r] = [...out.pe[r]!.slice(0, S), tail[tail.length - 1]!, ...tail.slice(0, -1)];
      out.update[r] = out.pe[r]!.indexOf(Math.max(...out.pe[r]!));
    }
    for (let s = 0; s < Math.min(zeros + 1, W); s++) out.bias[r]![s] = 0;
  }
  return out;
}

const flat = (m: number[][]) => m.flat();

// ---- the tiny model, loaded once ----

let cached: { config: UnetModelConfig; weights: TensorMap } | undefined;
async function tinyFiles() {
  if (!cached) {
    const caseJson = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
    const unetDir = goldenPath("models/tiny_sd15/unet");
    const config = unetModelConfig(await readUnetConfig(unetDir), caseJson.unet_additional_kwargs);
    const weights = new TensorMap();
    await loadUnetWeights(weights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
    cached = { config, weights };
  }
  return cached;
}

async function tinyModel(ctx: Context): Promise<Model> {
  const { config, weights } = await tinyFiles();
  return await Model.create(ctx, "unet", config, weights);
}

const H = 8, W = 8, C = 32;

async function stream(session: Session, T: number, draw: number) {
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 7, stream: 1, draw });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 7, stream: 2, draw });
  io.setPhilox("encoder_hidden_states", [1, 77, C], { kind: "normal", seed: 7, stream: 3, draw: 0 });
  io.setI64("timesteps", Array.from({ length: T }, (_, i) => 399 - 120 * i), [T]);
  await session.run("stream", io);
  return {
    noise: io.getF32("noise_pred"),
    bias: toFloat32(io.get("attn_bias_used")),
    pe: toFloat32(io.get("pe_idx_used")),
    update: toFloat32(io.get("update_idx_used")),
  };
}

async function warmup(session: Session, step: number) {
  using io = new TensorMap();
  io.setPhilox("sample", [1, 4, 8, H, W], { kind: "normal", seed: 7, stream: 4, draw: step });
  io.setPhilox("depth", [1, 4, 8, H, W], { kind: "normal", seed: 7, stream: 5, draw: 0 });
  io.setPhilox("encoder_hidden_states", [1, 77, C], { kind: "normal", seed: 7, stream: 3, draw: 0 });
  io.setI64("timestep", [399 - 120 * step], [1]);
  io.setI64("step", [step], [1]);
  await session.run("warmup", io);
  return io.getF32("noise_pred");
}

async function state(session: Session) {
  using io = new TensorMap();
  await session.run("get_state", io);
  const caches = io.names().filter((n) => n.startsWith("kv_cache_")).map((n) => io.getF32(n));
  return {
    caches,
    bias: toFloat32(io.get("attn_bias")),
    pe: toFloat32(io.get("pe_idx")),
    update: toFloat32(io.get("update_idx")),
  };
}

Deno.test("unet session: the bookkeeping follows README item 8 over 20 steps (3 rows), reset restores it", async () => {
  using ctx = Context.create("cpu");
  using model = await tinyModel(ctx);
  const T = 3;
  using session = model.createSession({ steps: T, latent_height: H, latent_width: W });
  let ref = initial(T);
  for (let step = 0; step < 20; step++) {
    const got = await stream(session, T, step);
    assert.deepEqual(Array.from(got.bias), flat(ref.bias), `attn_bias at step ${step}`);
    assert.deepEqual(Array.from(got.pe), flat(ref.pe), `pe_idx at step ${step}`);
    assert.deepEqual(Array.from(got.update), ref.update, `update_idx at step ${step}`);
    assert.ok(got.noise.every(Number.isFinite));
    ref = updated(ref);
  }
  const after = await state(session);
  assert.deepEqual(Array.from(after.pe), flat(ref.pe));
  assert.deepEqual(Array.from(after.update), ref.update);
  assert.equal(after.caches.length, 40);
  assert.ok(after.caches[0]!.some((v) => v !== 0), "streaming wrote the caches");

  {
    using none = new TensorMap();
    await session.run("reset", none);
  }
  const fresh = await state(session);
  const init = initial(T);
  assert.deepEqual(Array.from(fresh.bias), flat(init.bias));
  assert.deepEqual(Array.from(fresh.pe), flat(init.pe));
  assert.deepEqual(Array.from(fresh.update), init.update);
  assert.ok(fresh.caches.every((c) => c.every((v) => v === 0)), "reset zeroes every cache");
});

Deno.test("unet session: two sessions on one model are isolated and deterministic", async () => {
  using ctx = Context.create("cpu");
  using model = await tinyModel(ctx);
  using a = model.createSession({ steps: 2, latent_height: H, latent_width: W });
  using b = model.createSession({ steps: 2, latent_height: H, latent_width: W });
  const wa = [await warmup(a, 0), await warmup(a, 1)];
  const sa = await stream(a, 2, 0);
  const untouched = await state(b);
  assert.ok(untouched.caches.every((c) => c.every((v) => v === 0)), "b did not see a's caches");
  assert.deepEqual(Array.from(untouched.update), [8, 9]);

  // Warmup fills slots 0..7 of its row only; rows are [T, 2, P, 16, C].
  const sa0 = await state(a);
  const cache0 = sa0.caches[0]!;
  const slot = (row: number, kv: number, p: number, s: number) =>
    cache0.subarray((((row * 2 + kv) * 64 + p) * 16 + s) * C, ((((row * 2 + kv) * 64 + p) * 16 + s) * C) + C);
  assert.ok(slot(0, 0, 5, 3).some((v) => v !== 0) && slot(1, 1, 5, 7).some((v) => v !== 0));
  assert.ok(slot(0, 0, 5, 8).some((v) => v !== 0), "row 0 streamed into slot 8");
  assert.ok(
    slot(1, 0, 5, 9).some((v) => v !== 0) && slot(1, 0, 5, 8).every((v) => v === 0),
    "row 1 streamed into slot 9",
  );
  assert.ok(slot(0, 0, 5, 10).every((v) => v === 0));

  const wb = [await warmup(b, 0), await warmup(b, 1)];
  const sb = await stream(b, 2, 0);
  assert.deepEqual(wb, wa);
  assert.deepEqual(sb.noise, sa.noise);
});

Deno.test("unet session: set_state round-trips caches and bookkeeping", async () => {
  using ctx = Context.create("cpu");
  using model = await tinyModel(ctx);
  using a = model.createSession({ steps: 2, latent_height: H, latent_width: W });
  using b = model.createSession({ steps: 2, latent_height: H, latent_width: W });
  await warmup(a, 0);
  await stream(a, 2, 0);
  await stream(a, 2, 1);
  using io = new TensorMap();
  await a.run("get_state", io);
  await b.run("set_state", io);
  const [na, nb] = [await stream(a, 2, 2), await stream(b, 2, 2)];
  assert.deepEqual(nb.noise, na.noise);
  assert.deepEqual(nb.update, na.update);
});

Deno.test("unet: clear errors for bad sizes, shapes and checkpoints", async () => {
  using ctx = Context.create("cpu");
  using model = await tinyModel(ctx);
  // 12 = 8 + 4: the three halvings are not exact (README pitfall 11).
  assert.throws(
    () => model.createSession({ steps: 2, latent_height: 12, latent_width: 8 }),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /multiple of 8/.test(e.message),
  );
  using s = model.createSession({ steps: 2, latent_height: 16, latent_width: 8 }); // non-square is fine
  using io = new TensorMap();
  io.setPhilox("sample", [2, 4, 1, 8, 8], { kind: "normal", seed: 1 });
  io.setPhilox("depth", [2, 4, 1, 8, 8], { kind: "normal", seed: 1 });
  io.setPhilox("encoder_hidden_states", [1, 77, C], { kind: "normal", seed: 1 });
  io.setI64("timesteps", [399, 99], [2]);
  await assert.rejects(
    s.run("stream", io),
    (e: unknown) => e instanceof EngineError && e.code === "INVALID_ARGUMENT" && /sample/.test(e.message),
  );

  const { config, weights } = await tinyFiles();
  using bad = new TensorMap();
  for (const name of weights.names()) bad.set(name, weights.get(name));
  bad.setPhilox("conv_in.weight", [32, 4, 1, 1], { kind: "weight", seed: 1 });
  await assert.rejects(
    Model.create(ctx, "unet", config, bad),
    (e: unknown) =>
      e instanceof EngineError && e.code === "FORMAT" &&
      /conv_in\.weight.*\[32, 4, 1, 1\].*\[32, 4, 3, 3\]/.test(e.message),
  );
  bad.setPhilox("conv_in.weight", [32, 4, 3, 3], { kind: "weight", seed: 1 });
  bad.setPhilox("mid_block.motion_modules.0.extra.weight", [4], { kind: "weight", seed: 1 });
  await assert.rejects(
    Model.create(ctx, "unet", config, bad),
    (e: unknown) => e instanceof EngineError && e.code === "FORMAT" && /unexpected.*extra\.weight/.test(e.message),
  );
  bad.delete("mid_block.motion_modules.0.extra.weight");
  bad.setPhilox("down_blocks.0.motion_modules.0.temporal_transformer.grid_sample.weight", [4], {
    kind: "weight",
    seed: 1,
  });
  (await Model.create(ctx, "unet", config, bad)).close(); // "grid" keys are ignored, as in Live2Diff
});

Deno.test("unet loader: motion keys lose every 'module.' and 'grid' keys are dropped", () => {
  assert.equal(motionKey("module.down_blocks.0.motion_modules.0.x"), "down_blocks.0.motion_modules.0.x");
  assert.equal(motionKey("module.flow_conv_in.conv_in.weight"), "flow_conv_in.conv_in.weight");
  assert.equal(motionKey("module.a.grid"), null);
  assert.throws(() => unetModelConfig([] as unknown as Record<string, unknown>, {}), TypeError);
});

Deno.test("unet loader: reads a diffusers folder given the model root or unet/", async () => {
  const root = goldenPath("models/tiny_sd15");
  assert.deepEqual(await readUnetConfig(root), await readUnetConfig(join(root, "unet")));
  await assert.rejects(readUnetConfig(goldenPath("models")), /Cannot find the UNet weights/);
});

// The shared weights map lives for the whole module; free it after the last test.
Deno.test("unet test cleanup", () => {
  cached?.weights.close();
});
