/**
 * The UNet resnets through Backend::conv2d_fused (the time embedding and the skip added in the
 * convolutions' epilogue instead of by two binary Adds per resnet), counted by the session option
 * count_ops on the CPU backend with the tiny golden model (SD1.5's block structure): per streamed
 * forward, every resnet makes exactly two conv2d_fused calls (conv1 + time embedding, conv2 + skip)
 * and every other convolution of the checkpoint (but the transformers' 1x1 projections, which run as
 * GEMMs on tokens) stays one conv2d call. (That the fused op equals the Adds it replaces is
 * tests/conv2d_fused_test.ts; that the model still matches the reference is tests/unet_test.ts.)
 */
import assert from "node:assert/strict";
import { streamedUnetOpCounts } from "./_fixtures/unet_op_counts.ts";

Deno.test("unet session: count_ops shows two conv2d_fused per resnet and every other conv unchanged", async () => {
  const { weights, count } = await streamedUnetOpCounts();
  // Independently from the checkpoint: its resnets and its convolutions (4-D weights).
  const names = [...weights.keys()];
  const resnets = names.filter((n) => /resnets\.\d+\.conv1\.weight$/.test(n)).length;
  const convs = names.filter((n) => n.endsWith(".weight") && weights.get(n)!.length === 4).length;
  // The spatial transformers' 1x1 proj_in / proj_out run as GEMMs on tokens (linear, linear_to_image:
  // tests/layout_ops_test.ts), not as convolutions.
  const projConvs =
    names.filter((n) => /\.attentions\.\d+\.proj_(in|out)\.weight$/.test(n) && weights.get(n)!.length === 4).length;
  assert.ok(resnets > 0);

  assert.equal(count("conv2d_fused"), 2 * resnets, "conv1 + time embedding and conv2 + skip per resnet");
  assert.equal(
    count("conv2d") + count("conv2d_fused"),
    convs - projConvs,
    "every other convolution of the checkpoint runs once",
  );
});
