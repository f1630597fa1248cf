/**
 * The backend calls of ONE streamed UNet forward on the CPU backend (the unet session option
 * count_ops), with the tiny golden checkpoint's weight names and shapes beside them, so that a test
 * can derive what it expects from the checkpoint rather than from the model code. The tiny golden
 * UNet has SD1.5's block structure, so its counts are SD1.5's.
 *
 * @module
 */
import { loadUnetWeights, readUnetConfig, unetModelConfig } from "../../ffi/loaders/unet.ts";
import { Context, Model, TensorMap } from "../../ffi/native.ts";
import { goldenPath } from "./golden_root.ts";

/** One counted forward: the checkpoint's weights and the calls per op name. */
export interface UnetOpCounts {
  /** Weight name -> shape, every tensor of the checkpoint (UNet + motion module). */
  weights: Map<string, number[]>;
  /** Calls of a backend op (0 when it never ran). */
  count(op: string): number;
}

/** Loads the tiny golden UNet and counts the backend calls of one streamed forward (T = 2, 8x8). */
export async function streamedUnetOpCounts(): Promise<UnetOpCounts> {
  const caseJson = JSON.parse(await Deno.readTextFile(goldenPath("cases/unet_warmup/case.json")));
  const unetDir = goldenPath("models/tiny_sd15/unet");
  const config = unetModelConfig(await readUnetConfig(unetDir), caseJson.unet_additional_kwargs);
  using weights = new TensorMap();
  await loadUnetWeights(weights, unetDir, goldenPath("models/live2diff_tiny_motion_module.ckpt"));
  const shapes = new Map(weights.names().map((n) => [n, [...weights.info(n).shape]] as [string, number[]]));
  const cx = shapes.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")![1];

  using ctx = Context.create("cpu");
  using model = await Model.create(ctx, "unet", config, weights);
  const T = 2, H = 8, W = 8;
  using session = model.createSession({ steps: T, latent_height: H, latent_width: W, count_ops: true });
  using io = new TensorMap();
  io.setPhilox("sample", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 1 });
  io.setPhilox("depth", [T, 4, 1, H, W], { kind: "normal", seed: 3, stream: 2 });
  io.setPhilox("encoder_hidden_states", [1, 77, cx], { kind: "normal", seed: 3, stream: 3 });
  io.setI64("timesteps", [399, 279], [T]);
  await session.run("stream", io);
  const counts = new Map<string, number>();
  for (const name of io.names()) {
    if (!name.startsWith("op_count_")) continue;
    const t = io.get(name);
    counts.set(name.slice("op_count_".length), Number(new BigInt64Array(t.data.buffer, t.data.byteOffset, 1)[0]));
  }
  return { weights: shapes, count: (op) => counts.get(op) ?? 0 };
}
