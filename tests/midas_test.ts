// MiDaS DPT-Hybrid (native "midas" model): the golden case end to end (reduced model with the
// shipped weights and the full-size model with Philox weights, about 10 s on 2 CPU cores), plus
// shapes of non-square inputs (position-embedding resize), batch independence and the error
// contract (image sizes, missing / misshaped / unexpected weights, configs).
import assert from "node:assert/strict";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { CheckpointError } from "../ffi/formats/errors.ts";
import {
  loadMidasWeights,
  type MidasConfig,
  midasConfigFor,
  midasConfigFromSpec,
  midasPhiloxWeights,
} from "../ffi/loaders/midas.ts";
import { runCase } from "../scripts/golden.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";
import { rejectsWith } from "./_fixtures/assert_engine_error.ts";

const CASE_DIR = goldenPath("cases/midas");
const REDUCED = goldenPath("models/dpt_hybrid_reduced.pt");
const REDUCED_CONFIG: MidasConfig = { vit_num_heads: 4, groupnorm_groups: 8 };

function image(n: number, h: number, w: number, seed = 1): Float32Array {
  const out = new Float32Array(n * 3 * h * w);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(i * 0.0137 * seed + seed) * 0.9;
  return out;
}

Deno.test("midas: golden case passes on the CPU backend (reduced and full-size model)", async () => {
  const lines: string[] = [];
  const summary = await runCase(CASE_DIR, { device: "cpu", precision: "fp32" }, (l) => lines.push(l));
  assert.ok(summary.passed, `${summary.error ?? ""}\n${lines.join("\n")}`);
  assert.deepEqual(
    summary.tensors.map((t) => t.name).sort(),
    ["depth_full", "depth_reduced", "full_layer_4", "reduced_layer_2", "reduced_layer_3", "reduced_layer_4"],
  );
});

Deno.test("midas: config from the reduction spec and from a weights file's sibling json", async () => {
  assert.deepEqual(midasConfigFromSpec({ vit_num_heads: 4, resnet_groupnorm_groups: 8 }), REDUCED_CONFIG);
  assert.deepEqual(await midasConfigFor(REDUCED), REDUCED_CONFIG);
  assert.deepEqual(await midasConfigFor("/no/such/dpt_hybrid_384.pt"), { vit_num_heads: 12, groupnorm_groups: 32 });
  using map = new TensorMap();
  assert.throws(() => midasPhiloxWeights(map, [["a", 3]] as never, 1), TypeError);
  midasPhiloxWeights(map, [["scratch.output_conv.4.bias", [1]]], 1005);
  assert.deepEqual(map.info("scratch.output_conv.4.bias").shape, [1]);
});

Deno.test("midas: non-square frames, debug features, batch independence and input errors", async () => {
  using ctx = Context.create("cpu");
  using weights = new TensorMap();
  await loadMidasWeights(weights, REDUCED);
  using model = await Model.create(ctx, "midas", REDUCED_CONFIG, weights);
  const run = async (values: Float32Array, shape: number[], debug = false) => {
    using io = new TensorMap();
    io.setF32("images", values, shape);
    if (debug) io.setI64("debug", [1], [1]);
    await model.run("depth", io);
    const out: Record<string, { shape: number[]; values: Float32Array }> = {};
    for (const n of io.names()) {
      if (n !== "debug") out[n] = { shape: io.info(n).shape, values: io.getF32(n).slice() };
    }
    return out;
  };
  // 64 x 96: a 4 x 6 token grid, so the 24 x 24 position embeddings are resized.
  const out = await run(image(1, 64, 96), [1, 3, 64, 96], true);
  assert.deepEqual(out.depth!.shape, [1, 64, 96]);
  assert.deepEqual(out.layer_1!.shape, [1, 32, 16, 24]);
  assert.deepEqual(out.layer_2!.shape, [1, 64, 8, 12]);
  assert.deepEqual(out.layer_3!.shape, [1, 96, 4, 6]);
  assert.deepEqual(out.layer_4!.shape, [1, 96, 2, 3]);
  assert.ok(out.depth!.values.every((v) => Number.isFinite(v) && v >= 0), "depth is finite and non-negative");
  assert.ok(!("layer_1" in (await run(image(1, 64, 96), [1, 3, 64, 96]))), "no debug features unless asked");

  // A batch gives each image's own result.
  const a = image(1, 64, 64, 1), b = image(1, 64, 64, 2);
  const both = new Float32Array(a.length * 2);
  both.set(a), both.set(b, a.length);
  const batch = (await run(both, [2, 3, 64, 64])).depth!.values;
  const single = [(await run(a, [1, 3, 64, 64])).depth!.values, (await run(b, [1, 3, 64, 64])).depth!.values];
  for (let k = 0; k < 2; k++) {
    for (let i = 0; i < 64 * 64; i++) {
      assert.ok(Math.abs(batch[k * 4096 + i]! - single[k]![i]!) <= 1e-6, `batch row ${k} pixel ${i}`);
    }
  }

  const shaped = (shape: number[]) => run(new Float32Array(shape.reduce((x, y) => x * y, 1)), shape);
  await rejectsWith(shaped([1, 3, 48, 64]), "INVALID_ARGUMENT", "multiples of 32");
  await rejectsWith(shaped([1, 3, 64, 80]), "INVALID_ARGUMENT", "multiples of 32");
  await rejectsWith(shaped([1, 3, 0, 64]), "INVALID_ARGUMENT", "multiples of 32");
  await rejectsWith(shaped([1, 4, 64, 64]), "INVALID_ARGUMENT", "[N, 3, H, W]");
  await rejectsWith(shaped([3, 64, 64]), "INVALID_ARGUMENT", "[N, 3, H, W]");
  using io = new TensorMap();
  await rejectsWith(model.run("depth", io), "NOT_FOUND", "images");
  io.setI64("images", [1, 2, 3], [1, 3, 1, 1]);
  await rejectsWith(model.run("depth", io), "INVALID_ARGUMENT", "float");
  await rejectsWith(model.run("encode", io), "NOT_FOUND", "encode");
});

Deno.test("midas: a missing, misshaped or unexpected weight or a bad config is a clear EngineError", async () => {
  using ctx = Context.create("cpu");
  const attempt = async (edit: (w: TensorMap) => void, config: MidasConfig = REDUCED_CONFIG) => {
    using w = new TensorMap();
    await loadMidasWeights(w, REDUCED);
    edit(w);
    using m = await Model.create(ctx, "midas", config, w);
    return m;
  };
  for (
    const name of [
      "scratch.layer3_rn.weight",
      "pretrained.model.patch_embed.backbone.stem.conv.weight",
      "pretrained.model.blocks.0.attn.qkv.bias",
      "pretrained.act_postprocess4.4.bias",
      "pretrained.model.pos_embed",
    ]
  ) {
    await rejectsWith(attempt((w) => w.delete(name)), "NOT_FOUND", name);
  }
  await rejectsWith(
    attempt((w) => w.setF32("scratch.output_conv.2.bias", new Float32Array(5), [5])),
    "FORMAT",
    "scratch.output_conv.2.bias",
    "[5]",
    "[32]",
  );
  await rejectsWith(
    attempt((w) => w.setF32("scratch.extra.weight", new Float32Array(1), [1])),
    "FORMAT",
    "scratch.extra.weight",
  );
  // The unused classifier head, final norm and refinenet4.resConfUnit1 may be absent.
  await attempt((w) => {
    for (const n of w.names()) {
      if (/^pretrained\.model\.(head|norm)\.|^scratch\.refinenet4\.resConfUnit1\./.test(n)) w.delete(n);
    }
  });
  await rejectsWith(attempt(() => {}, { vit_num_heads: 5, groupnorm_groups: 8 }), "FORMAT", "vit_num_heads");
  await rejectsWith(attempt(() => {}, { groupnorm_groups: 8 }), "FORMAT", "vit_num_heads");
  await rejectsWith(attempt(() => {}, { vit_num_heads: 4 }), "FORMAT", "groupnorm_groups");
  await rejectsWith(attempt(() => {}, { ...REDUCED_CONFIG, vit_hooks: [8, 12] }), "FORMAT", "hook");
});

Deno.test({
  name: "midas: a config sibling that is a FIFO, directory or not JSON is a CheckpointError (never a blocked open)",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const fifoWeights = `${dir}/fifo.pt`, dirWeights = `${dir}/dir.pt`, badWeights = `${dir}/bad.pt`;
    assert.ok((await new Deno.Command("mkfifo", { args: [`${dir}/fifo.json`] }).output()).success, "mkfifo");
    await Deno.mkdir(`${dir}/dir.json`);
    await Deno.writeTextFile(`${dir}/bad.json`, "{not json");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 2000));
    try {
      const outcome = await Promise.race([midasConfigFor(fifoWeights).then(() => "read", (e) => e), timeout]);
      if (outcome === "timeout") {
        (await Deno.open(`${dir}/fifo.json`, { write: true })).close(); // unblock the open so the test ends
        assert.fail("midasConfigFor blocked on a FIFO");
      }
      assert.ok(outcome instanceof CheckpointError && /not a regular file/.test(outcome.message), `got ${outcome}`);
      await assert.rejects(() => midasConfigFor(dirWeights), CheckpointError);
      await assert.rejects(() => midasConfigFor(badWeights), CheckpointError);
    } finally {
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
