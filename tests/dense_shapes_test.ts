// The conv / linear shape table that test_cuda_dense runs every kernel path on must be the real
// networks': regenerated from the presets it equals the committed file, every weight is placed, and
// its per-frame FLOPs agree with the independent per-frame budget.
import assert from "node:assert/strict";
import {
  type DenseShape,
  denseShapes,
  formatTable,
  midasShapes,
  type Sd15Preset,
  TABLE_PATH,
  taesdShapes,
  unetShapes,
  UnplacedWeightError,
} from "../scripts/dense_shapes.ts";

const root = new URL("../", import.meta.url);
const preset = JSON.parse(await Deno.readTextFile(new URL("engines/presets/sd15.json", root))) as Sd15Preset;

function flops(s: DenseShape): number {
  if (s.kind === "linear") return 2 * s.m * s.k * s.n * s.count;
  const ho = Math.floor((s.h + s.pad[0] + s.pad[1] - s.kh) / s.stride) + 1;
  const wo = Math.floor((s.w + s.pad[2] + s.pad[3] - s.kw) / s.stride) + 1;
  return 2 * s.n * s.o * s.c * s.kh * s.kw * ho * wo * s.count;
}

Deno.test("dense shapes: the committed table is the derivation from the presets", async () => {
  const committed = await Deno.readTextFile(new URL(TABLE_PATH, root));
  assert.equal(committed, formatTable(denseShapes(preset)), "run: deno run -A scripts/dense_shapes.ts");
});

Deno.test("dense shapes: every conv / linear weight of the three networks becomes one call", () => {
  const weights = (list: [string, number[]][], ranks: number[]) =>
    list.filter(([n, s]) => n.endsWith(".weight") && ranks.includes(s.length)).length;
  // UNet: every 2-D and 4-D weight is one call per row set, except that the q/k/v weights of each
  // self-attention (spatial attn1, temporal motion-module attention) are one packed call.
  const selfAttentions =
    preset.unet_shapes.filter(([n]) =>
      n.endsWith(".attn1.to_q.weight") || (n.includes(".motion_modules.") && n.endsWith(".to_q.weight"))
    ).length;
  assert.ok(selfAttentions > 0);
  for (const T of [2, 3]) {
    assert.equal(unetShapes(preset, T).length, weights(preset.unet_shapes, [2, 4]) - 2 * selfAttentions);
  }
  assert.equal(taesdShapes(preset).length, weights(preset.taesd.shapes, [4]));
  // MiDaS: minus the unused classifier head and refinenet4's unused first residual unit (2 convs),
  // plus the second half of each of the two split readout projections.
  assert.equal(midasShapes(preset).length, weights(preset.midas_shapes, [2, 4]) - 1 - 2 + 2);
});

Deno.test("dense shapes: a weight no rule knows is an error, not a silent gap", () => {
  const bad: Sd15Preset = { ...preset, unet_shapes: [...preset.unet_shapes, ["extra.proj.weight", [8, 8]]] };
  assert.throws(() => unetShapes(bad, 2), UnplacedWeightError);
});

Deno.test("dense shapes: per-frame FLOPs match the issue's independent budget", () => {
  // Issue 14 (from the original network): at T = 2, ~0.8 TFLOP in 3x3 convs and ~1.15 TFLOP in
  // linears + 1x1 convs; TAESD (3 passes) + MiDaS ~0.6 TFLOP. 5% bands around those figures.
  const u = unetShapes(preset, 2);
  const conv3 = u.filter((s) => s.kind === "conv" && s.kh === 3).reduce((a, s) => a + flops(s), 0) / 1e12;
  const rest = u.filter((s) => !(s.kind === "conv" && s.kh === 3)).reduce((a, s) => a + flops(s), 0) / 1e12;
  const vae = [...taesdShapes(preset), ...midasShapes(preset)].reduce((a, s) => a + flops(s), 0) / 1e12;
  assert(Math.abs(conv3 - 0.8) / 0.8 < 0.05, `3x3 convs: ${conv3} TFLOP`);
  assert(Math.abs(rest - 1.15) / 1.15 < 0.05, `linears + 1x1: ${rest} TFLOP`);
  assert(Math.abs(vae - 0.6) / 0.6 < 0.08, `TAESD + MiDaS: ${vae} TFLOP`);
  // T = 3 runs every UNet layer on 1.5x the rows (the prompt K/V projections included).
  const u3 = unetShapes(preset, 3).reduce((a, s) => a + flops(s), 0);
  const u2 = u.reduce((a, s) => a + flops(s), 0);
  assert(Math.abs(u3 / u2 - 1.5) < 1e-9, `T=3 / T=2 = ${u3 / u2}`);
});
