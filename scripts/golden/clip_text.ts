/**
 * Runner of the `clip_text` golden cases: the CLIP tokenizer (ids compared exactly) and the native
 * "clip_text" model, including Live2Diff's `_encode_prompt` clip-skip embeddings. Driven by
 * case.json (`prompts`, `model_files`, optional `untruncated_ids`) and the recorded output names:
 * `input_ids`, `attention_mask`, `last_hidden_state`, `pooler_output`, `hidden_states` and
 * `encode_prompt_p<i>_clipskip<None|k>`.
 *
 * @module
 */

import { join } from "node:path";
import type { CaseRun, CaseRunner } from "./framework.ts";
import { ClipTokenizer } from "../../ffi/clip_tokenizer.ts";
import { type Context, Model, TensorMap } from "../../ffi/native.ts";
import { loadClipText } from "../../ffi/loaders/clip.ts";
import { numel } from "../../ffi/host_tensor.ts";

/** The tokenizer's model_max_length (tokenizer_config.json), 77 when not stated. */
async function modelMaxLength(dir: string): Promise<number> {
  try {
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
    const v = cfg?.model_max_length;
    return typeof v === "number" && Number.isInteger(v) && v > 0 && v < 1e6 ? v : 77;
  } catch {
    return 77;
  }
}

interface EncodeResult {
  /** name -> values and shape */
  tensors: Map<string, { values: Float32Array; shape: number[] }>;
}

async function encode(model: Model, ids: number[][], clipSkip: number | null): Promise<EncodeResult> {
  using io = new TensorMap();
  io.setI64("input_ids", ids.flat(), [ids.length, ids[0]!.length]);
  if (clipSkip !== null) io.setI64("clip_skip", [clipSkip], [1]);
  await model.run("encode", io);
  const tensors = new Map<string, { values: Float32Array; shape: number[] }>();
  for (const name of io.names()) {
    const info = io.info(name);
    if (info.dtype === "F32") tensors.set(name, { values: io.getF32(name).slice(), shape: info.shape });
  }
  return { tensors };
}

async function clipTextCase(run: CaseRun, ctx: Context): Promise<void> {
  const files = run.json?.model_files ?? {};
  if (typeof files.tokenizer !== "string" || typeof files.text_encoder !== "string") {
    throw new Error("case.json needs model_files.tokenizer and model_files.text_encoder");
  }
  const prompts = run.json?.prompts;
  if (!Array.isArray(prompts) || prompts.length === 0 || !prompts.every((p) => typeof p === "string")) {
    throw new Error("case.json needs a non-empty list of prompts");
  }
  const tokDir = run.path(files.tokenizer);
  const tok = await ClipTokenizer.load(tokDir);
  const maxLength = await modelMaxLength(tokDir);

  // Tokenizer: padded ids, attention mask, untruncated ids.
  const ids: number[][] = [];
  const mask: number[][] = [];
  for (const p of prompts as string[]) {
    const row = Array.from(tok.encode(p, { maxLength }));
    const real = tok.encode(p, { maxLength, pad: false }).length;
    ids.push(row);
    mask.push(row.map((_, i) => (i < real ? 1 : 0)));
  }
  const untruncated = run.json?.untruncated_ids;
  if (Array.isArray(untruncated)) {
    (prompts as string[]).forEach((p, i) => {
      const ours = Array.from(tok.encode(p, { maxLength: Infinity, pad: false }));
      run.compareExact(`untruncated_ids_p${i}`, ours, untruncated[i] ?? []);
    });
  }

  using te = await loadClipText(run.path(files.text_encoder));
  using model = await Model.create(ctx, "clip_text", te.config, te.weights);
  const cache = new Map<string, EncodeResult>();
  const encodeCached = async (clipSkip: number | null) => {
    const key = String(clipSkip);
    let r = cache.get(key);
    if (!r) {
      r = await encode(model, ids, clipSkip);
      cache.set(key, r);
    }
    return r;
  };

  const names = await run.outputNames();
  for (const name of names) {
    const ref = await run.expected(name);
    if (name === "input_ids") {
      run.compareExact(name, ids.flat(), ref);
      continue;
    }
    if (name === "attention_mask") {
      run.compareExact(name, mask.flat(), ref);
      continue;
    }
    let actual: Float32Array;
    const m = /^encode_prompt_p(\d+)_clipskip(None|\d+)$/.exec(name);
    if (m) {
      const row = Number(m[1]);
      if (row >= ids.length) throw new Error(`output "${name}" names prompt ${row}, the case has ${ids.length}`);
      const clipSkip = m[2] === "None" ? null : Number(m[2]);
      const r = await encodeCached(clipSkip);
      const t = r.tensors.get(clipSkip === null ? "last_hidden_state" : "prompt_embeds")!;
      const per = t.values.length / ids.length;
      actual = t.values.subarray(row * per, (row + 1) * per);
    } else if (name === "last_hidden_state" || name === "pooler_output" || name === "hidden_states") {
      const t = (await encodeCached(null)).tensors.get(name)!;
      if (t.shape.join(",") !== ref.shape.join(",")) {
        throw new Error(`output "${name}": computed shape [${t.shape}], recorded [${ref.shape}]`);
      }
      actual = t.values;
    } else {
      throw new Error(`unknown clip_text output "${name}"`);
    }
    if (actual.length !== numel(ref.shape)) {
      throw new Error(`output "${name}": computed ${actual.length} values, recorded [${ref.shape}]`);
    }
    run.compare(name, actual, ref);
  }
}

/** Runners of this module, by case kind. */
export const runners: Record<string, CaseRunner> = { clip_text: clipTextCase };
