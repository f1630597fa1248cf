/**
 * The UNet resnets through Backend::conv2d_fused (the time embedding and the skip added in the
 * convolutions' epilogue instead of by two binary Adds per resnet), counted by the session option
 * count_ops on the CPU backend with the tiny golden model (SD1.5's block structure): per streamed
 * forward, every resnet makes exactly two conv2d_fused calls (conv1 + time embedding, conv2 + skip)
 * and every other convolution of the checkpoint (but the transformers' 1x1 projections, which run as
 * GEMMs on tokens) stays one conv2d call. (That the fused op equals the
 * Adds it replaces is tests/conv2d_fused_test.ts; that the model still matches the reference is
 * tests/unet_test.ts.)
 */
import assert from "node:assert/strict";
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../ffi/loaders/unet.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

const H = 8, W = 8, L = 77;

function readI64(io: TensorMap, name: string): number {
  const t = io.get(name);
  assert.equal(t.dtype, "I64", name);
  return Number(new BigInt64Array(t.data.buffer, t.data.byteOffset, 1)[0]);
}

Deno.test("unet session: count_ops shows two conv2d_fused per resnet and every other conv unchanged", async () => {
  const caseJson = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
  const unetDir = goldenPath("models/tiny_sd15/unet");
  const config = unetModelConfig(await readUnetConfig(unetDir), caseJson.unet_additional_kwargs);
  using weights = new TensorMap();
  await loadUnetWeights(weights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
  const Cx = weights.info("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight").shape[1]!;

  // Independently from the checkpoint: its resnets and its convolutions (4-D weights).
  const names = weights.names();
  const resnets = names.filter((n) => /resnets\.\d+\.conv1\.weight$/.test(n)).length;
  const convs = names.filter((n) => n.endsWith(".weight") && weights.info(n).shape.length === 4).length;
  // The spatial transformers' 1x1 proj_in / proj_out run as GEMMs on tokens (linear, linear_to_image:
  // tests/layout_ops_test.ts), not as convolutions.
  const projConvs =
    names.filter((n) => /\.attentions\.\d+\.proj_(in|out)\.weight$/.test(n) && weights.info(n).shape.length === 4)
      .length;
  assert.ok(resnets > 0);

  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "unet", config, weights);
  const T = 2;
  using session = model.createSession({ steps: T, latent_height: H, latent_width: W, count_ops: true });
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 1 });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 2 });
  io.setPhilox("encoder_hidden_states", [1, L, Cx], { kind: "normal", seed: 3, stream: 3 });
  io.setI64("timesteps", [399, 279], [T]);
  await session.run("stream", io);
  const count = (op: string) => io.names().includes(`op_count_${op}`) ? readI64(io, `op_count_${op}`) : 0;

  assert.equal(count("conv2d_fused"), 2 * resnets, "conv1 + time embedding and conv2 + skip per resnet");
  assert.equal(
    count("conv2d") + count("conv2d_fused"),
    convs - projConvs,
    "every other convolution of the checkpoint runs once",
  );
});
