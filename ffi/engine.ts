/**
 * {@linkcode Engine}: one engine file (see `engines/`) loaded onto a backend: the UNet with its
 * motion modules, TAESD, MiDaS and the CLIP text encoder + tokenizer, plus the style settings
 * (clip_skip, prompt template, default denoising steps). Streams are created from it.
 *
 * @module
 */

import { join } from "node:path";
import { ClipTokenizer } from "./clip_tokenizer.ts";
import { EngineError } from "./errors.ts";
import type { HostTensor } from "./host_tensor.ts";
import { type BackendName, Context, type ContextStats, Model, TensorMap } from "./native.ts";
import { resolveDevice } from "./device.ts";
import { Stream } from "./stream.ts";
import { checkClipSkip, type StreamOptions } from "./stream_options.ts";
import { DPT_HYBRID_384_CONFIG, type MidasConfig, midasConfigFromSpec } from "./loaders/midas.ts";
import {
  checkEngineTarget,
  type EngineFile,
  EngineFileError,
  type EngineStyle,
  openEngine,
} from "../engines/format.ts";

/** Options of {@linkcode Engine.load}. */
export interface EngineLoadOptions {
  /** Backend to run on; "auto" picks CUDA when a GPU is present. @default "auto" */
  device?: BackendName | "auto";
  /** CUDA storage precision. @default "fp16" */
  precision?: "fp16" | "fp32";
  /** CPU worker threads. @default all cores */
  threads?: number;
  /** CUDA device ordinal (one engine per GPU; see cluster/). @default 0 */
  deviceIndex?: number;
  /** Hash every tensor before loading (slow for large engines; reads always check per tensor). @default false */
  verify?: boolean;
}

/** Options of {@linkcode Engine.encodePrompt}. */
export interface EncodePromptOptions {
  /** Which hidden state (Live2Diff's clip_skip). @default the engine's style */
  clipSkip?: number;
  /** Wrap the prompt in the style's template (`"masterpiece, ..., {}"`). @default true */
  applyTemplate?: boolean;
}

/**
 * A loaded engine. Create streams with {@linkcode Engine.createStream}; close it (or use `using`)
 * when done. Streams keep the native weights alive, so an engine may be closed before its streams.
 *
 * @example A real engine on the GPU (after `deno task build-engine ... --target sm_90`)
 * ```ts ignore
 * import { Engine } from "./engine.ts";
 * using engine = await Engine.load("models/engines/sd15.l2de", { device: "cuda" });
 * using stream = await engine.createStream({ prompt: "a watercolor painting", width: 512, height: 512 });
 * ```
 *
 * @example The default engine (random weights) and a prompt embedding
 * ```ts
 * import { Engine } from "./engine.ts";
 * using engine = await Engine.loadDefault({ device: "cpu" });
 * const embeds = await engine.encodePrompt("a cat");
 * console.assert(engine.synthetic && embeds.shape[1] === 77);
 * ```
 */
export class Engine implements Disposable {
  /** The engine file this was loaded from. */
  readonly path: string;
  /** Style settings stored in the engine. */
  readonly style: Readonly<EngineStyle>;
  /** True for engines made by `make-synthetic-engine` (random weights: output is noise-like). */
  readonly synthetic: boolean;
  /** The backend in use. */
  readonly device: BackendName;
  readonly #ctx: Context;
  readonly #unet: Model;
  readonly #vae: Model;
  readonly #depth: Model;
  readonly #text: Model;
  readonly #tokenizer: ClipTokenizer;
  readonly #scheduler: Record<string, unknown>;
  readonly #crossAttentionDim: number;

  private constructor(init: {
    path: string;
    style: EngineStyle;
    synthetic: boolean;
    device: BackendName;
    ctx: Context;
    unet: Model;
    vae: Model;
    depth: Model;
    text: Model;
    tokenizer: ClipTokenizer;
    scheduler: Record<string, unknown>;
    crossAttentionDim: number;
  }) {
    this.path = init.path;
    this.style = Object.freeze({ ...init.style });
    this.synthetic = init.synthetic;
    this.device = init.device;
    this.#ctx = init.ctx;
    this.#unet = init.unet;
    this.#vae = init.vae;
    this.#depth = init.depth;
    this.#text = init.text;
    this.#tokenizer = init.tokenizer;
    this.#scheduler = init.scheduler;
    this.#crossAttentionDim = init.crossAttentionDim;
  }

  /**
   * Loads an engine file onto a backend (validating header, target and every tensor's checksum). An
   * engine built for another kind of machine (a CUDA target on the CPU, or `cpu` on CUDA) is an
   * {@linkcode EngineFileError} naming both targets.
   */
  static async load(path: string, options: EngineLoadOptions = {}): Promise<Engine> {
    const device = resolveDevice(options.device);
    using file = await openEngine(path, { verify: options.verify ?? false });
    checkEngineTarget(path, file.target, device);
    const ctx = Context.create(device, {
      precision: options.precision,
      threads: options.threads,
      device: options.deviceIndex,
    });
    const models: Model[] = [];
    try {
      const make = async (kind: string, prefix: string, config: unknown) => {
        using weights = new TensorMap();
        await file.loadInto(weights, prefix);
        const model = await Model.create(ctx, kind, config, weights);
        models.push(model);
        return model;
      };
      const unetCfg = { ...file.config("unet") };
      const motion = unetCfg.unet_additional_kwargs;
      delete unetCfg.unet_additional_kwargs;
      const unet = await make("unet", "unet.", { unet: unetCfg, motion });
      const vae = await make("taesd", "taesd.", file.config("taesd"));
      const depth = await make("midas", "midas.", midasConfig(file));
      const textCfg = file.config("text_encoder");
      const text = await make("clip_text", "text_encoder.", textCfg);
      const tokenizer = await loadTokenizer(file);
      return new Engine({
        path,
        style: file.header.style,
        synthetic: file.header.generator?.includes("synthetic") ||
          file.header.provenance.some((p) => p.role === "synthetic"),
        device,
        ctx,
        unet,
        vae,
        depth,
        text,
        tokenizer,
        scheduler: file.config("scheduler"),
        crossAttentionDim: Number((unetCfg as Record<string, unknown>).cross_attention_dim ?? 768),
      });
    } catch (e) {
      for (const m of models) m.close();
      ctx.close();
      throw e;
    }
  }

  /**
   * The default engine used when none is configured: a tiny engine with RANDOM (Philox) weights,
   * built on first use and cached (`$LIVE2DIFF_CACHE_DIR`, default `~/.cache/live2diff`). It runs
   * everywhere and fast, but its output is noise-like: build a real engine with
   * `deno task download-models` and `deno task build-engine` (see engines/README.md).
   */
  static async loadDefault(options: EngineLoadOptions = {}): Promise<Engine> {
    const device = resolveDevice(options.device);
    const target = device === "cuda" ? "sm_90" : "cpu";
    const dir = Deno.env.get("LIVE2DIFF_CACHE_DIR") ?? join(Deno.env.get("HOME") ?? ".", ".cache", "live2diff");
    const path = join(dir, `synthetic-tiny-${target}.l2de`);
    try {
      await Deno.stat(path);
    } catch {
      await Deno.mkdir(dir, { recursive: true });
      const { makeSyntheticEngine } = await import("../engines/synthetic.ts");
      const tmp = `${path}.${Deno.pid}.tmp`;
      await makeSyntheticEngine({ preset: "tiny", target, out: tmp, quiet: true });
      await Deno.rename(tmp, path); // atomic: concurrent first uses never see a partial file
    }
    return await Engine.load(path, { ...options, device });
  }

  /** A one-line notice for UIs and logs when the engine's weights are random. */
  get notice(): string | null {
    return this.synthetic
      ? "This engine has RANDOM weights (synthetic): output is noise-like. Build a real engine: " +
        "`deno task download-models` then `deno task build-engine --config <style.yaml> ...` (engines/README.md)"
      : null;
  }

  /** Encodes a prompt to the UNet's text conditioning [1, 77, C] (tokenizer + CLIP with clip_skip). */
  async encodePrompt(prompt: string, options: EncodePromptOptions = {}): Promise<HostTensor> {
    if (typeof prompt !== "string") {
      throw new TypeError(`Cannot encode the prompt: expected a string, got ${typeof prompt}`);
    }
    const clipSkip = checkClipSkip("Cannot encode the prompt", options.clipSkip) ?? this.style.clip_skip;
    const template = options.applyTemplate ?? true ? this.style.prompt_template : null;
    const text = template ? applyPromptTemplate(template, prompt) : prompt;
    const ids = this.#tokenizer.encode(text);
    using io = new TensorMap();
    io.setI64("input_ids", ids, [1, ids.length]);
    io.setI64("clip_skip", [clipSkip], [1]);
    await this.#text.run("encode", io);
    const embeds = io.get("prompt_embeds");
    if (embeds.shape[2] !== this.#crossAttentionDim) {
      throw new EngineError(
        "FORMAT",
        `The engine's text encoder gives ${embeds.shape[2]} channels, its UNet expects ${this.#crossAttentionDim}`,
      );
    }
    return embeds;
  }

  /** Creates a live stream (its own KV caches and buffers) and sets its prompt. */
  async createStream(options: StreamOptions): Promise<Stream> {
    return await Stream.create(this, {
      unet: this.#unet,
      vae: this.#vae,
      depth: this.#depth,
      scheduler: this.#scheduler,
    }, options);
  }

  /** Statistics of the engine's context: memory, launches, push and stage times (`ContextStats`). */
  stats(): ContextStats {
    return this.#ctx.stats();
  }

  /** Turns the per-stage timing of its streams' pushes on or off (`Context.profileStages`). */
  profileStages(on: boolean): void {
    this.#ctx.profileStages(on);
  }

  /** Releases the engine's handles (idempotent). Open streams keep working. */
  close(): void {
    for (const m of [this.#unet, this.#vae, this.#depth, this.#text]) m.close();
    this.#ctx.close();
  }

  /** Calls {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The style's prompt template with its first `{}` replaced by `prompt`, literally: `String.replace`
 * with a string would expand `$&`, `` $` ``, `$'` and `$$` in the user's prompt.
 *
 * @example
 * ```ts
 * import { applyPromptTemplate } from "./engine.ts";
 * console.assert(applyPromptTemplate("art, {}", "price $$5") === "art, price $$5");
 * ```
 */
export function applyPromptTemplate(template: string, prompt: string): string {
  return template.replace("{}", () => prompt);
}

/** MiDaS config: heads and groups from a reduced model's spec file when present, else the real DPT-Hybrid's. */
function midasConfig(file: EngineFile): MidasConfig {
  const specFile = file.config("midas").spec as { spec?: Record<string, unknown> } | undefined;
  return specFile?.spec ? midasConfigFromSpec(specFile.spec) : { ...DPT_HYBRID_384_CONFIG };
}

/** The engine's tokenizer; any problem with its blobs is an {@linkcode EngineFileError} naming the engine. */
async function loadTokenizer(file: EngineFile): Promise<ClipTokenizer> {
  try {
    return await readTokenizer(file);
  } catch (e) {
    if (e instanceof EngineFileError) throw e;
    throw new EngineFileError(`Engine "${file.path}" has a corrupt tokenizer: ${(e as Error).message}`, { cause: e });
  }
}

async function readTokenizer(file: EngineFile): Promise<ClipTokenizer> {
  const cfg = file.config("tokenizer") as { files?: Record<string, string> } & Record<string, unknown>;
  const files = cfg.files ?? {};
  if (typeof files !== "object" || files === null || Object.values(files).some((f) => typeof f !== "string")) {
    throw new EngineFileError(`Engine "${file.path}" has a tokenizer file list that is not names by file`);
  }
  const vocab = files["vocab.json"], merges = files["merges.txt"];
  if (!vocab || !merges) {
    throw new EngineFileError(`Engine "${file.path}" has no tokenizer vocab.json/merges.txt`);
  }
  const text = (name: string | undefined) => name ? file.text(name).catch(() => undefined) : Promise.resolve(undefined);
  const special = await text(files["special_tokens_map.json"]);
  const tokenName = (v: unknown) => typeof v === "string" ? v : (v as { content?: string } | undefined)?.content;
  const map = special ? JSON.parse(special) : cfg;
  if (typeof map !== "object" || map === null) throw new Error("special_tokens_map.json is not an object");
  return ClipTokenizer.fromFiles(await file.text(vocab), await file.text(merges), {
    bosToken: tokenName(map.bos_token),
    eosToken: tokenName(map.eos_token),
    padToken: tokenName(map.pad_token),
    unkToken: tokenName(map.unk_token),
    vocabName: join(file.path, "vocab.json"),
    mergesName: join(file.path, "merges.txt"),
  });
}
