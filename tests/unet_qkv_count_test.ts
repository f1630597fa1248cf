/**
 * One QKV projection in the UNet, counted by the session option count_ops on the tiny golden
 * checkpoint: per streamed forward, every spatial self-attention (attn1) and every motion-module
 * temporal attention projects q, k and v with ONE linear call (its weight packed at load) and runs
 * the packed attention op (self_attention / stream_temporal_attention_qkv); the unpacked ops run
 * only for cross-attention. The expected numbers come from the checkpoint's weight names, not
 * from the model code.
 */
import assert from "node:assert/strict";
import { streamedUnetOpCounts } from "./_fixtures/unet_op_counts.ts";

Deno.test("unet stream: one linear and one packed attention call per self-attention, counted", async () => {
  const { weights, count: op } = await streamedUnetOpCounts();
  const names = [...weights.keys()];
  const count = (re: RegExp) => names.filter((n) => re.test(n)).length;
  const attn1 = count(/\.attn1\.to_q\.weight$/);
  const attn2 = count(/\.attn2\.to_q\.weight$/);
  const temporal = count(/\.attention_blocks\.\d+\.to_q\.weight$/);
  assert.ok(attn1 > 0 && attn2 === attn1 && temporal > 0, `${attn1} / ${attn2} / ${temporal}`);
  // Every 2-D weight is one linear call per streamed forward, except attn2's to_k / to_v (the
  // prompt's K/V are projected per prompt, not per frame) and the packed q/k/v triples (one call).
  const linears = names.filter((n) => n.endsWith(".weight") && weights.get(n)!.length === 2).length;
  const expectedLinear = linears - 2 * attn2 - 2 * (attn1 + temporal);
  // The spatial transformers' 1x1 proj_in / proj_out convolutions run as GEMMs on tokens too.
  const projConvs =
    names.filter((n) => /\.attentions\.\d+\.proj_(in|out)\.weight$/.test(n) && weights.get(n)!.length === 4).length;

  assert.equal(op("self_attention"), attn1, "self_attention per attn1");
  assert.equal(op("attention"), attn2, "attention only for cross-attention");
  assert.equal(op("stream_temporal_attention_qkv"), temporal, "packed temporal attention per motion block");
  assert.equal(op("stream_temporal_attention"), 0, "no unpacked temporal attention");
  // Every GEMM over a weight: linear, + residual, + GEGLU (feed-forward), written back to NCHW.
  const gemms = op("linear") + op("linear_add") + op("linear_geglu") + op("linear_to_image");
  assert.equal(gemms, expectedLinear + projConvs, "linear calls (q/k/v packed)");
  assert.equal(op("slice"), 0, "the streamed forward slices nothing");
});
