// CLIP text encoder (native "clip_text" model): the golden case end to end, HF semantics that the
// case does not pin down (short sequences, pooler position, clip_skip 0), and the error contract.
import assert from "node:assert/strict";
import { Context, Model, TensorMap } from "../ffi/native.ts";
import { loadClipText } from "../ffi/loaders/clip.ts";
import { runCase } from "../scripts/golden.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";
import { rejectsWith } from "./_fixtures/assert_engine_error.ts";

const CASE_DIR = goldenPath("cases/clip_text");
const MODEL_DIR = goldenPath("models/tiny_sd15/text_encoder");

Deno.test("clip_text: golden case passes on the CPU backend", async () => {
  const lines: string[] = [];
  const summary = await runCase(CASE_DIR, { device: "cpu", precision: "fp32" }, (l) => lines.push(l));
  assert.ok(summary.passed, `${summary.error ?? ""}\n${lines.join("\n")}`);
  const names = summary.tensors.map((t) => t.name);
  for (const n of ["input_ids", "last_hidden_state", "pooler_output", "hidden_states", "encode_prompt_p0_clipskip2"]) {
    assert.ok(names.includes(n), `${n} was not compared`);
  }
});

Deno.test("clip_text: short sequences, pooler at the EOS (max id) and clip_skip semantics", async () => {
  using ctx = Context.create("cpu");
  using files = await loadClipText(MODEL_DIR);
  using model = await Model.create(ctx, "clip_text", files.config, files.weights);
  const V = files.config.vocab_size as number, C = files.config.hidden_size as number;
  const layers = files.config.num_hidden_layers as number;
  const ids = [V - 2, 5, 7, V - 1, V - 1, 3, V - 2, 9, V - 1, 1]; // two rows of 5
  using io = new TensorMap();
  io.setI64("input_ids", ids, [2, 5]);
  io.setI64("clip_skip", [0], [1]);
  await model.run("encode", io);
  assert.deepEqual(io.info("last_hidden_state").shape, [2, 5, C]);
  assert.deepEqual(io.info("hidden_states").shape, [layers + 1, 2, 5, C]);
  assert.deepEqual(io.info("pooler_output").shape, [2, C]);
  const last = io.getF32("last_hidden_state"), pooled = io.getF32("pooler_output");
  // eos_token_id == 2 (legacy config): pooled = row at argmax(ids), first maximum.
  assert.deepEqual(pooled.subarray(0, C), last.subarray(3 * C, 4 * C));
  assert.deepEqual(pooled.subarray(C, 2 * C), last.subarray((5 + 3) * C, (5 + 4) * C));
  // clip_skip 0 = final LN of the last layer = last_hidden_state.
  assert.deepEqual(io.getF32("prompt_embeds"), last);
  // Causal: the first token's state does not depend on later tokens.
  using io2 = new TensorMap();
  io2.setI64("input_ids", [V - 2, 11, 12], [1, 3]);
  await model.run("encode", io2);
  assert.ok(!io2.has("prompt_embeds"));
  const a = io2.getF32("last_hidden_state").subarray(0, C);
  assert.deepEqual(a, last.subarray(0, C));
});

Deno.test("clip_text: bad ids, lengths, clip_skip and weights are clear EngineErrors", async () => {
  using ctx = Context.create("cpu");
  using files = await loadClipText(MODEL_DIR);
  using model = await Model.create(ctx, "clip_text", files.config, files.weights);
  const V = files.config.vocab_size as number, layers = files.config.num_hidden_layers as number;
  const run = async (ids: number[], shape: number[], clipSkip?: number) => {
    using io = new TensorMap();
    io.setI64("input_ids", ids, shape);
    if (clipSkip !== undefined) io.setI64("clip_skip", [clipSkip], [1]);
    await model.run("encode", io);
  };
  await rejectsWith(run([1, V, 2], [1, 3]), "INVALID_ARGUMENT", String(V), "vocabulary");
  await rejectsWith(run([1, -1, 2], [1, 3]), "INVALID_ARGUMENT", "-1");
  await rejectsWith(run(new Array(78).fill(1), [1, 78]), "INVALID_ARGUMENT", "77");
  await rejectsWith(run([1, 2, 3], [3]), "INVALID_ARGUMENT", "[B, L]");
  await rejectsWith(run([1, 2, 3], [1, 3], layers + 1), "INVALID_ARGUMENT", "clip_skip");
  await rejectsWith(run([1, 2, 3], [1, 3], -1), "INVALID_ARGUMENT", "clip_skip");
  await run([1, 2, 3], [1, 3], layers); // hidden_states[0] (the embeddings) is allowed
  {
    using io = new TensorMap();
    io.setF32("input_ids", new Float32Array([1, 2]), [1, 2]);
    await rejectsWith(model.run("encode", io), "INVALID_ARGUMENT", "integer");
  }

  const name = "text_model.encoder.layers.1.mlp.fc2.weight";
  const kept = files.weights.get(name);
  files.weights.delete(name);
  await rejectsWith(Model.create(ctx, "clip_text", files.config, files.weights), "NOT_FOUND", name);
  files.weights.set(name, kept);
  files.weights.setI64("text_model.embeddings.position_ids", Array.from({ length: 77 }, (_, i) => i), [1, 77]);
  // An old HF checkpoint's position_ids buffer is ignored.
  using withBuffer = await Model.create(ctx, "clip_text", files.config, files.weights);
  assert.ok(!withBuffer.closed);
  files.weights.setF32("text_model.extra.weight", new Float32Array(1), [1]);
  await rejectsWith(Model.create(ctx, "clip_text", files.config, files.weights), "FORMAT", "text_model.extra.weight");
  await rejectsWith(
    Model.create(ctx, "clip_text", { ...files.config, hidden_act: "swish" }, files.weights),
    "UNSUPPORTED",
    "swish",
  );
});
