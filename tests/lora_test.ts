/**
 * LoRA fusing (engines/lora.ts) through real engine builds on the golden tiny models:
 * - the golden engine_build case: DreamBooth single file + kohya LoRA with Live2Diff's rule == fused.* outputs;
 * - PEFT (lora_A/lora_B + adapter_config.json) and diffusers (.lora.down/.alpha) files generated here,
 *   fused with the diffusers convention, against an independent W + scale*(alpha/r)*B@A in float64;
 * - a kohya file with the kohya convention (alpha/rank) vs Live2Diff's (ignores both);
 * - module resolution (greedy like convert_lora_model_level, LDM-named paths) and the conv_in rule.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildEngine, buildFromStyleConfig } from "../engines/build.ts";
import { openEngine } from "../engines/format.ts";
import { fuseInto, type LoraSpec, ModuleIndex, parseLoraArg, resolveKohyaPath } from "../engines/lora.ts";
import { openSafetensors, writeSafetensors } from "../ffi/formats/mod.ts";
import { fromFloat32, type HostTensor, toFloat32 } from "../ffi/host_tensor.ts";
import { philoxNormal } from "../ffi/philox.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

const G = (p: string) => goldenPath(p);

async function tinyEngine(dir: string, loras: LoraSpec[]): Promise<string> {
  const out = join(dir, `e${Math.random().toString(36).slice(2)}.l2de`);
  await buildEngine({
    out,
    target: "cpu",
    base: G("models/tiny_sd15"),
    motion: G("models/live2diff_tiny_motion_module.ckpt"),
    depth: G("models/dpt_hybrid_reduced.pt"),
    taesd: G("models/taesd"),
    loras,
    quiet: true,
    log: () => {},
  });
  return out;
}

const rand = (shape: number[], stream: number) => fromFloat32(philoxNormal(shape, 77, stream, 0), shape);

/** W + factor * B@A in float64 (the independent computation). */
function expected(w: Float32Array, b: HostTensor, a: HostTensor, factor: number): Float64Array {
  const B = toFloat32(b), A = toFloat32(a);
  const out = b.shape[0]!, r = a.shape[0]!, K = A.length / r;
  const res = Float64Array.from(w);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += B[o * r + j]! * A[j * K + k]!;
      res[o * K + k]! += factor * s;
    }
  }
  return res;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function baseWeight(file: string, key: string): Promise<Float32Array> {
  using f = await openSafetensors(file);
  return toFloat32(await f.read(key));
}

Deno.test("golden engine_build: DreamBooth + kohya LoRA (Live2Diff rule) match fused.* outputs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = join(dir, "eb.l2de");
    const caseJson = JSON.parse(await Deno.readTextFile(G("cases/engine_build/case.json")));
    const report = await buildFromStyleConfig(G(caseJson.engine_build.files.config), {
      out,
      target: "cpu",
      root: goldenPath("."),
      taesd: G("models/taesd"),
      quiet: true,
      log: () => {},
    });
    assert.equal(report.loraPairs, 13);
    assert.deepEqual(report.warnings, []);
    const lora = report.header.provenance.find((p) => p.role === "lora")!;
    assert.equal(lora.lora_scale, 0.8);
    assert.equal(lora.lora_convention, "live2diff");
    using engine = await openEngine(out, { target: "cpu" });
    using outputs = await openSafetensors(G("cases/engine_build/outputs.safetensors"));
    let compared = 0;
    for (const name of outputs.names.filter((n) => n.startsWith("fused."))) {
      const bound = caseJson.tolerance.advised_max_abs[name];
      const d = maxDiff(toFloat32(await engine.read(name.slice(6))), toFloat32(await outputs.read(name)));
      assert.ok(d <= bound, `${name}: ${d} > ${bound}`);
      compared++;
    }
    assert.equal(compared, 14);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PEFT and diffusers LoRAs: alpha/rank scaling vs an independent computation", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = 4;
    // PEFT layout, alpha from adapter_config.json (lora_alpha 8 -> factor 2 x scale).
    const q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
    const peft: Record<string, HostTensor> = {
      [`unet.${q}.lora_A.weight`]: rand([r, 32], 1),
      [`unet.${q}.lora_B.weight`]: rand([32, r], 2),
      "text_encoder.text_model.encoder.layers.1.self_attn.v_proj.lora_A.weight": rand([r, 32], 3),
      "text_encoder.text_model.encoder.layers.1.self_attn.v_proj.lora_B.weight": rand([32, r], 4),
    };
    await Deno.mkdir(join(dir, "peft"));
    await writeSafetensors(join(dir, "peft", "lora.safetensors"), peft);
    await Deno.writeTextFile(join(dir, "peft", "adapter_config.json"), JSON.stringify({ r, lora_alpha: 8 }));
    // Old diffusers layout with an explicit .alpha (2 -> factor 0.5 x scale) on a 1x1 conv.
    const p = "mid_block.attentions.0.proj_in";
    const diff: Record<string, HostTensor> = {
      [`unet.${p}.lora.down.weight`]: rand([r, 64, 1, 1], 5),
      [`unet.${p}.lora.up.weight`]: rand([64, r, 1, 1], 6),
      [`unet.${p}.alpha`]: fromFloat32(new Float32Array([2]), []),
    };
    await writeSafetensors(join(dir, "diff.safetensors"), diff);
    const engine = await tinyEngine(dir, [
      { path: join(dir, "peft", "lora.safetensors"), scale: 0.7, convention: "diffusers" },
      { path: join(dir, "diff.safetensors"), scale: 1.5, convention: "diffusers" },
    ]);
    using e = await openEngine(engine);
    const unetFile = G("models/tiny_sd15/unet/diffusion_pytorch_model.safetensors");
    const teFile = G("models/tiny_sd15/text_encoder/model.safetensors");
    const checks: Array<[string, Float64Array]> = [
      [
        `unet.${q}.weight`,
        expected(
          await baseWeight(unetFile, `${q}.weight`),
          peft[`unet.${q}.lora_B.weight`]!,
          peft[`unet.${q}.lora_A.weight`]!,
          0.7 * 8 / r,
        ),
      ],
      [
        "text_encoder.text_model.encoder.layers.1.self_attn.v_proj.weight",
        expected(
          await baseWeight(teFile, "text_model.encoder.layers.1.self_attn.v_proj.weight"),
          peft["text_encoder.text_model.encoder.layers.1.self_attn.v_proj.lora_B.weight"]!,
          peft["text_encoder.text_model.encoder.layers.1.self_attn.v_proj.lora_A.weight"]!,
          0.7 * 8 / r,
        ),
      ],
      [
        `unet.${p}.weight`,
        expected(
          await baseWeight(unetFile, `${p}.weight`),
          diff[`unet.${p}.lora.up.weight`]!,
          diff[`unet.${p}.lora.down.weight`]!,
          1.5 * 2 / r,
        ),
      ],
    ];
    for (const [name, want] of checks) {
      const d = maxDiff(toFloat32(await e.read(name)), want);
      assert.ok(d < 1e-6, `${name}: ${d}`);
    }
    // An untouched weight stays bit-identical to the base file.
    const k = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight";
    assert.equal(maxDiff(toFloat32(await e.read(`unet.${k}`)), await baseWeight(unetFile, k)), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kohya LoRA: kohya convention (alpha/rank) vs Live2Diff rule (ignores alpha)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = 4, alpha = 1;
    const mod = "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_2";
    const file: Record<string, HostTensor> = {
      [`${mod}.lora_down.weight`]: rand([r, 256], 7),
      [`${mod}.lora_up.weight`]: rand([64, r], 8),
      [`${mod}.alpha`]: fromFloat32(new Float32Array([alpha]), []),
    };
    await writeSafetensors(join(dir, "k.safetensors"), file);
    const key = "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight";
    const w = await baseWeight(G("models/tiny_sd15/unet/diffusion_pytorch_model.safetensors"), key);
    for (const [convention, factor] of [["kohya", 0.9 * alpha / r], ["live2diff", 0.9]] as const) {
      const engine = await tinyEngine(dir, [{ path: join(dir, "k.safetensors"), scale: 0.9, convention }]);
      using e = await openEngine(engine);
      const want = expected(w, file[`${mod}.lora_up.weight`]!, file[`${mod}.lora_down.weight`]!, factor);
      const d = maxDiff(toFloat32(await e.read(`unet.${key}`)), want);
      // float32 result vs float64 reference: a few ulps of values of magnitude ~10.
      const scale = Math.max(1, ...want.map(Math.abs));
      assert.ok(d < 1e-6 * scale, `${convention}: ${d}`);
    }
    // A module that does not exist is a clear error naming the key.
    await writeSafetensors(join(dir, "bad.safetensors"), {
      "lora_unet_down_blocks_9_nothing.lora_down.weight": rand([r, 4], 1),
      "lora_unet_down_blocks_9_nothing.lora_up.weight": rand([4, r], 2),
    });
    await assert.rejects(
      tinyEngine(dir, [{ path: join(dir, "bad.safetensors"), scale: 1, convention: "live2diff" }]),
      /cannot find the module of "lora_unet_down_blocks_9_nothing/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("module resolution and the conv_in rule", () => {
  const idx = new ModuleIndex([
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight",
    "mid_block.attentions.0.proj_out.weight",
    "up_blocks.1.resnets.2.time_emb_proj.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
  ]);
  assert.equal(
    resolveKohyaPath("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0", idx),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
  );
  assert.equal(resolveKohyaPath("mid_block_attentions_0_proj_out", idx), "mid_block.attentions.0.proj_out");
  assert.equal(resolveKohyaPath("up_blocks_1_resnets_2_time_emb_proj", idx), "up_blocks.1.resnets.2.time_emb_proj");
  assert.equal(
    resolveKohyaPath("down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj", idx),
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
  );
  assert.equal(resolveKohyaPath("mid_block_nothing", idx), null);
  // conv_in rule: an 8-input-channel conv only gets channels 0..3 updated.
  const w = new Float32Array(2 * 8 * 1 * 1);
  fuseInto(
    w,
    [2, 8, 1, 1],
    new Float32Array([1, 1]),
    [2, 1, 1, 1],
    new Float32Array([1, 2, 3, 4]),
    [1, 4, 1, 1],
    0.5,
    true,
  );
  assert.deepEqual([...w], [0.5, 1, 1.5, 2, 0, 0, 0, 0, 0.5, 1, 1.5, 2, 0, 0, 0, 0]);
  assert.throws(() =>
    fuseInto(w, [2, 8, 1, 1], new Float32Array([1, 1]), [2, 1], new Float32Array([1, 2, 3]), [1, 3], 1)
  );
  assert.deepEqual(parseLoraArg("a/b.safetensors:0.8", "live2diff"), {
    path: "a/b.safetensors",
    scale: 0.8,
    convention: "live2diff",
  });
  assert.deepEqual(parseLoraArg("x.safetensors:1:diffusers", "live2diff"), {
    path: "x.safetensors",
    scale: 1,
    convention: "diffusers",
  });
  assert.deepEqual(parseLoraArg("x.safetensors", "kohya"), { path: "x.safetensors", scale: 1, convention: "kohya" });
});
