/**
 * One QKV projection in the UNet, counted by the session option count_ops on the tiny golden
 * checkpoint: per streamed forward, every spatial self-attention (attn1) and every motion-module
 * temporal attention projects q, k and v with ONE linear call (its weight packed at load) and runs
 * the packed attention op (self_attention / stream_temporal_attention_qkv); the unpacked ops run
 * only for cross-attention. The expected numbers come from the checkpoint's weight names, not
 * from the model code.
 */
import assert from "node:assert/strict";
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../ffi/loaders/unet.ts";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

const H = 8, W = 8, L = 77;

function readI64(io: TensorMap, name: string): number {
  const t = io.get(name);
  return Number(new BigInt64Array(t.data.buffer, t.data.byteOffset, 1)[0]);
}

Deno.test("unet stream: one linear and one packed attention call per self-attention, counted", async () => {
  const caseJson = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
  const unetDir = goldenPath("models/tiny_sd15/unet");
  const config = unetModelConfig(await readUnetConfig(unetDir), caseJson.unet_additional_kwargs);
  using weights = new TensorMap();
  await loadUnetWeights(weights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
  const names = weights.names();
  const count = (re: RegExp) => names.filter((n) => re.test(n)).length;
  const attn1 = count(/\.attn1\.to_q\.weight$/);
  const attn2 = count(/\.attn2\.to_q\.weight$/);
  const temporal = count(/\.attention_blocks\.\d+\.to_q\.weight$/);
  assert.ok(attn1 > 0 && attn2 === attn1 && temporal > 0, `${attn1} / ${attn2} / ${temporal}`);
  // Every 2-D weight is one linear call per streamed forward, except attn2's to_k / to_v (the
  // prompt's K/V are projected per prompt, not per frame) and the packed q/k/v triples (one call).
  const linears = names.filter((n) => n.endsWith(".weight") && weights.info(n).shape.length === 2).length;
  const expectedLinear = linears - 2 * attn2 - 2 * (attn1 + temporal);
  // The spatial transformers' 1x1 proj_in / proj_out convolutions run as GEMMs on tokens too.
  const projConvs =
    names.filter((n) => /\.attentions\.\d+\.proj_(in|out)\.weight$/.test(n) && weights.info(n).shape.length === 4)
      .length;

  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "unet", config, weights);
  const Cx = weights.info("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight").shape[1]!;
  const T = 2;
  using session = model.createSession({ steps: T, latent_height: H, latent_width: W, count_ops: true });
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 1 });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 2 });
  io.setPhilox("encoder_hidden_states", [1, L, Cx], { kind: "normal", seed: 3, stream: 3 });
  io.setI64("timesteps", [399, 279], [T]);
  await session.run("stream", io);
  const op = (name: string) => io.names().includes(`op_count_${name}`) ? readI64(io, `op_count_${name}`) : 0;
  assert.equal(op("self_attention"), attn1, "self_attention per attn1");
  assert.equal(op("attention"), attn2, "attention only for cross-attention");
  assert.equal(op("stream_temporal_attention_qkv"), temporal, "packed temporal attention per motion block");
  assert.equal(op("stream_temporal_attention"), 0, "no unpacked temporal attention");
  // Every GEMM over a weight: linear, + residual, + GEGLU (feed-forward), written back to NCHW.
  const gemms = op("linear") + op("linear_add") + op("linear_geglu") + op("linear_to_image");
  assert.equal(gemms, expectedLinear + projConvs, "linear calls (q/k/v packed)");
  assert.equal(op("slice"), 0, "the streamed forward slices nothing");
});
