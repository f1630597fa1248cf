/**
 * Runs a golden pipeline-style case (`pipeline`, `engine_build`) through the public API: an engine
 * file built from the case's model files, `Engine.load`, `engine.createStream` (debug on), warm-up
 * on video frames 0..7, then one push per remaining frame. Compares everything the case recorded:
 * scheduler constants, prompt embeddings, warm-up and streamed frames (float and uint8), the
 * per-call intermediates (`warmup.*`, `frame<i>.*`) and the KV-cache sums / slices.
 *
 * @module
 */

import { Engine } from "../../ffi/engine.ts";
import { type EngineTarget, EngineWriter, openEngine } from "../../engines/format.ts";
import { type HostTensor, numel, toFloat32 } from "../../ffi/host_tensor.ts";
import { TensorMap } from "../../ffi/native.ts";
import type { CaseRun } from "./framework.ts";

/**
 * Copies an engine file with another target label and the SAME tensors (dtypes kept). The golden
 * runners use it for CUDA fp32: `Engine.load` refuses a "cpu" engine on CUDA, and an sm_90 build
 * stores F16 weights, whose rounding alone would exceed the fp32 bound (4 x advised); so the cpu
 * build (F32 weights) is relabelled sm_90. The deployment path (sm_90, F16 weights) is what the
 * fp16 runs use.
 */
export async function retargetEngine(src: string, dst: string, target: EngineTarget): Promise<void> {
  using file = await openEngine(src);
  const h = file.header;
  const writer = await EngineWriter.create(dst, {
    target,
    generator: `${h.generator} (relabelled ${h.target} -> ${target} by scripts/golden)`,
    created: h.created,
    components: h.components,
    style: h.style,
    provenance: h.provenance,
  }, h.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })));
  try {
    for (const t of h.tensors) await writer.write(t.name, (await file.read(t.name)).data);
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/**
 * The engine a pipeline-style case's frames run on, from its CPU build: on the CPU the build itself;
 * on CUDA fp16 an sm_90 build (`buildAt("sm_90")`: F16 weights, as deployed); on CUDA fp32 the CPU
 * build relabelled sm_90 ({@linkcode retargetEngine}). New files go next to `cpuEngine`.
 */
export async function engineForDevice(
  run: CaseRun,
  cpuEngine: string,
  buildAt: (target: EngineTarget) => Promise<string>,
): Promise<string> {
  if (run.options.device === "cpu") return cpuEngine;
  if (run.options.precision === "fp16") return await buildAt("sm_90");
  const out = cpuEngine.replace(/\.l2de$/, "") + "-sm_90-f32.l2de";
  await retargetEngine(cpuEngine, out, "sm_90");
  return out;
}

/** Compares every recorded output named `<tag>.<key>` with the io entry `<key>`. */
async function compareTagged(run: CaseRun, names: string[], tag: string, io: TensorMap): Promise<void> {
  const have = new Set(io.names());
  for (const name of names) {
    if (!name.startsWith(`${tag}.`)) continue;
    const key = name.slice(tag.length + 1);
    const ref = await run.expected(name);
    if (!have.has(key)) {
      run.compare(name, new Float32Array(0), ref);
      continue;
    }
    const got = toFloat32(io.get(key));
    if (ref.dtype === "I64" || key.endsWith("attn_bias")) run.compareExact(name, got, ref);
    else run.compare(name, got, ref);
  }
}

/** The stored region of a cache (slots 0..slots-1): float64 sum, sum of squares and the slice. */
function cacheStats(cache: HostTensor, slots: number) {
  const [T, two, P, W, C] = cache.shape as [number, number, number, number, number];
  const v = toFloat32(cache);
  let sum = 0, sumsq = 0;
  const slice: number[] = [];
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < two; k++) {
      for (let p = 0; p < P; p++) {
        for (let s = 0; s < slots; s++) {
          for (let c = 0; c < C; c++) {
            const x = v[(((t * two + k) * P + p) * W + s) * C + c]!;
            sum += x;
            sumsq += x * x;
          }
        }
      }
    }
  }
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < two; k++) {
      for (let p = 0; p < Math.min(2, P); p++) {
        for (let s = 0; s < slots; s++) {
          for (let c = 0; c < Math.min(8, C); c++) slice.push(v[(((t * two + k) * P + p) * W + s) * C + c]!);
        }
      }
    }
  }
  return { sum: Math.fround(sum), sumsq: Math.fround(sumsq), slice: Float32Array.from(slice) };
}

async function compareCaches(run: CaseRun, names: string[], prefix: string, io: TensorMap): Promise<void> {
  for (const name of names) {
    const m = name.match(new RegExp(`^${prefix}_(\\d+)_(sum|sumsq|slice)$`));
    if (!m) continue;
    const cacheName = `kv_cache_${m[1]}`;
    const ref = await run.expected(name);
    const cache = io.get(cacheName);
    // Stored slots: the slice's slot dimension says how many (8 after warm-up, 16 at the end).
    const sliceRef = await run.expected(`${prefix}_${m[1]}_slice`);
    const slots = sliceRef.shape[3]!;
    const stats = cacheStats(cache, slots);
    const got = m[2] === "slice" ? stats.slice : new Float32Array([m[2] === "sum" ? stats.sum : stats.sumsq]);
    run.compare(name, got, ref);
  }
}

/** Splits uint8/float frames [N, H, W, 3] of an io entry into rows. */
function rows(t: HostTensor): number {
  return t.shape[0]!;
}

/**
 * Runs warm-up + streaming of a pipeline-style case on an engine file and compares every recorded
 * output. `prompt` is passed verbatim (the recorded prompt already carries the style template).
 */
export async function runPipelineFrames(run: CaseRun, enginePath: string): Promise<void> {
  const cfg = run.json.config;
  const names = await run.outputNames();
  // The case's clip_skip wins over the style config's (undefined: the engine's style).
  const clipSkip = typeof cfg.clip_skip === "number" ? cfg.clip_skip : undefined;
  using engine = await Engine.load(enginePath, { device: run.options.device, precision: run.options.precision });
  using stream = await engine.createStream({
    prompt: String(cfg.prompt ?? ""),
    applyTemplate: false,
    clipSkip,
    width: Number(cfg.width),
    height: Number(cfg.height),
    tIndexList: (cfg.t_index_list as number[]).map(Number),
    numInferenceSteps: Number(cfg.num_inference_steps ?? 50),
    seed: Number(cfg.noise_seed ?? 0),
    debug: true,
  });
  const session = stream.session;
  const T = stream.steps;

  {
    using io = new TensorMap();
    await session.run("schedule", io);
    for (const key of ["alphas_cumprod", "alpha_prod_t_sqrt", "beta_prod_t_sqrt", "c_skip", "c_out"]) {
      if (names.includes(key)) run.compare(key, io.getF32(key), await run.expected(key));
    }
    if (names.includes("sub_timesteps")) {
      run.compareExact("sub_timesteps", toFloat32(io.get("sub_timesteps")), await run.expected("sub_timesteps"));
    }
  }
  if (names.includes("prompt_embeds")) {
    const embeds = await engine.encodePrompt(String(cfg.prompt ?? ""), { applyTemplate: false, clipSkip });
    const one = toFloat32(embeds), ref = await run.expected("prompt_embeds");
    const repeated = new Float32Array(numel(ref.shape));
    for (let r = 0; r < ref.shape[0]!; r++) repeated.set(one, r * one.length);
    run.compare("prompt_embeds", repeated, ref);
  }

  const video = await run.input("video_u8"); // [N, H, W, 3] uint8
  const [N, H, W, C] = video.shape as [number, number, number, number];
  const frameBytes = H * W * C;
  const warm = 8;
  {
    using io = new TensorMap();
    io.set("frames", { dtype: "U8", shape: [warm, H, W, C], data: video.data.subarray(0, warm * frameBytes) });
    await session.run("warmup", io);
    if (names.includes("warmup_frames")) {
      run.compare("warmup_frames", io.getF32("frames"), await run.expected("warmup_frames"));
    }
    if (names.includes("warmup_frames_u8")) {
      run.compareU8("warmup_frames_u8", io.get("frames_u8").data, await run.expected("warmup_frames_u8"));
    }
    await compareTagged(run, names, "warmup", io);
  }
  {
    using io = new TensorMap();
    await session.run("get_state", io);
    await compareCaches(run, names, "kv_cache_after_warmup", io);
  }

  const streamF32: number[] = [], streamU8: number[] = [];
  for (let i = warm; i < N; i++) {
    using io = new TensorMap();
    io.set("frame", { dtype: "U8", shape: [H, W, C], data: video.data.subarray(i * frameBytes, (i + 1) * frameBytes) });
    await session.run("push", io);
    const f = io.get("frames");
    if (rows(f) !== 1) throw new Error(`push returned ${rows(f)} frames`);
    streamF32.push(...io.getF32("frames"));
    streamU8.push(...io.get("frames_u8").data);
    await compareTagged(run, names, `frame${i}`, io);
  }
  if (names.includes("stream_frames")) {
    run.compare("stream_frames", Float32Array.from(streamF32), await run.expected("stream_frames"));
  }
  if (names.includes("stream_frames_u8")) {
    run.compareU8("stream_frames_u8", Uint8Array.from(streamU8), await run.expected("stream_frames_u8"));
  }
  {
    using io = new TensorMap();
    await session.run("get_state", io);
    await compareCaches(run, names, "kv_cache_final", io);
  }
  if (T < 1) throw new Error("stream has no denoising steps");
}
