/**
 * LDM single-file -> diffusers key mapping (engines/ldm_convert.ts): SD1.5-layout spot checks, and the golden
 * DreamBooth file mapped completely onto the tiny base's UNet / text encoder / VAE key sets with matching
 * shapes, its values landing in the engine unchanged (Philox seeds 1101/1102 rounded to F16).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildEngine } from "../engines/build.ts";
import { openEngine } from "../engines/format.ts";
import { ldmUnetKey, ldmVaeKey, mapLdmKey } from "../engines/ldm_convert.ts";
import { SD15_UNET_CONFIG, SD15_VAE_CONFIG } from "../engines/sources.ts";
import { openSafetensors } from "../ffi/formats/mod.ts";
import { fromFloat32, toFloat32 } from "../ffi/host_tensor.ts";
import { philoxWeight } from "../ffi/philox.ts";
import { convertTensor } from "../engines/build.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

Deno.test("LDM UNet/VAE keys map like convert_from_ckpt for the SD1.5 layout", () => {
  const u = (k: string) => ldmUnetKey(k, SD15_UNET_CONFIG);
  assert.equal(u("input_blocks.0.0.weight"), "conv_in.weight");
  assert.equal(u("input_blocks.1.1.proj_in.weight"), "down_blocks.0.attentions.0.proj_in.weight");
  assert.equal(u("input_blocks.2.0.emb_layers.1.bias"), "down_blocks.0.resnets.1.time_emb_proj.bias");
  assert.equal(u("input_blocks.3.0.op.weight"), "down_blocks.0.downsamplers.0.conv.weight");
  assert.equal(u("input_blocks.4.0.skip_connection.weight"), "down_blocks.1.resnets.0.conv_shortcut.weight");
  assert.equal(u("input_blocks.11.0.out_layers.3.weight"), "down_blocks.3.resnets.1.conv2.weight");
  assert.equal(u("input_blocks.12.0.op.weight"), null); // the last level has no downsampler
  assert.equal(
    u("middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
  );
  assert.equal(u("middle_block.2.in_layers.0.weight"), "mid_block.resnets.1.norm1.weight");
  assert.equal(u("output_blocks.2.1.conv.weight"), "up_blocks.0.upsamplers.0.conv.weight");
  assert.equal(u("output_blocks.5.2.conv.bias"), "up_blocks.1.upsamplers.0.conv.bias");
  assert.equal(u("output_blocks.5.1.norm.weight"), "up_blocks.1.attentions.2.norm.weight");
  assert.equal(u("output_blocks.11.1.proj_out.weight"), "up_blocks.3.attentions.2.proj_out.weight");
  assert.equal(u("output_blocks.9.0.in_layers.2.weight"), "up_blocks.3.resnets.0.conv1.weight");
  assert.equal(u("time_embed.2.weight"), "time_embedding.linear_2.weight");
  assert.equal(u("out.0.bias"), "conv_norm_out.bias");
  assert.equal(u("out.2.weight"), "conv_out.weight");
  assert.equal(u("label_emb.0.0.weight"), null);
  const v = (k: string) => ldmVaeKey(k, SD15_VAE_CONFIG);
  assert.deepEqual(v("decoder.up.3.block.0.nin_shortcut.weight"), {
    name: "decoder.up_blocks.0.resnets.0.conv_shortcut.weight",
    squeeze: false,
  });
  assert.deepEqual(v("encoder.mid.attn_1.q.weight"), {
    name: "encoder.mid_block.attentions.0.to_q.weight",
    squeeze: true,
  });
  assert.deepEqual(v("decoder.mid.attn_1.proj_out.bias"), {
    name: "decoder.mid_block.attentions.0.to_out.0.bias",
    squeeze: false,
  });
  assert.equal(v("encoder.down.0.downsample.conv.weight")?.name, "encoder.down_blocks.0.downsamplers.0.conv.weight");
  assert.equal(v("encoder.norm_out.weight")?.name, "encoder.conv_norm_out.weight");
  assert.equal(
    mapLdmKey("cond_stage_model.transformer.text_model.final_layer_norm.weight", SD15_UNET_CONFIG, SD15_VAE_CONFIG)
      ?.name,
    "text_model.final_layer_norm.weight",
  );
  assert.equal(mapLdmKey("model_ema.decay", SD15_UNET_CONFIG, SD15_VAE_CONFIG), null);
});

Deno.test("golden DreamBooth file maps onto the tiny model key sets and lands unchanged in the engine", async () => {
  const G = goldenPath;
  const unetCfg = JSON.parse(await Deno.readTextFile(G("models/tiny_sd15/unet/config.json")));
  const vaeCfg = JSON.parse(await Deno.readTextFile(G("models/tiny_sd15/vae/config.json")));
  using db = await openSafetensors(G("models/dreambooth_tiny_ldm.safetensors"));
  const sets = {
    unet: await openSafetensors(G("models/tiny_sd15/unet/diffusion_pytorch_model.safetensors")),
    vae: await openSafetensors(G("models/tiny_sd15/vae/diffusion_pytorch_model.safetensors")),
    text_encoder: await openSafetensors(G("models/tiny_sd15/text_encoder/model.safetensors")),
  };
  try {
    const seen = { unet: new Set<string>(), vae: new Set<string>(), text_encoder: new Set<string>() };
    for (const key of db.names) {
      const m = mapLdmKey(key, unetCfg, vaeCfg);
      assert.ok(m, `unmapped ${key}`);
      const target = sets[m.model];
      assert.ok(target.has(m.name), `${key} -> ${m.name} not in the ${m.model}`);
      let shape = db.info(key).shape;
      if (m.squeeze) shape = shape.slice(0, 2);
      assert.deepEqual(shape, target.info(m.name).shape, key);
      seen[m.model].add(m.name);
    }
    for (const model of ["unet", "vae", "text_encoder"] as const) {
      assert.equal(seen[model].size, sets[model].names.length, model);
    }
  } finally {
    for (const f of Object.values(sets)) f.close();
  }
  // Through a build (no LoRA): every 2-D UNet and CLIP tensor equals the Philox value rounded to F16.
  const dir = await Deno.makeTempDir();
  try {
    const out = join(dir, "db.l2de");
    await buildEngine({
      out,
      target: "cpu",
      base: G("models/tiny_sd15"),
      dreambooth: G("models/dreambooth_tiny_ldm.safetensors"),
      motion: G("models/live2diff_tiny_motion_module.ckpt"),
      depth: G("models/dpt_hybrid_reduced.pt"),
      taesd: G("models/taesd"),
      loras: [],
      quiet: true,
      log: () => {},
    });
    using e = await openEngine(out);
    let checked = 0;
    for (const name of e.names) {
      const [model, ...rest] = name.split(".");
      const key = rest.join(".");
      const seed = model === "unet" && !key.includes("motion_modules") && !key.startsWith("flow_conv_in")
        ? 1101
        : model === "text_encoder"
        ? 1102
        : 0;
      if (!seed || checked % 7 !== 0 && !key.includes("conv_in")) {
        if (seed) checked++;
        continue;
      }
      const t = await e.read(name);
      const want = toFloat32({
        dtype: "F16",
        shape: t.shape,
        data: convertTensor(fromFloat32(philoxWeight(key, t.shape, seed), t.shape), "F16"),
      });
      assert.deepEqual(toFloat32(t), want, name);
      checked++;
    }
    assert.ok(checked > 300);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
