/**
 * Video file in, video file out: `deno task translate in.mp4 out.mp4 --prompt "an oil painting"`.
 *
 * ffmpeg (the system's, e.g. Debian's `ffmpeg` package; `--ffmpeg`/`FFMPEG` to choose another)
 * decodes the input scaled and centre-cropped to the stream size, the frames go through one
 * live2diff stream (the first 8 as its warm-up batch, the last ones flushed so every input frame
 * gets its output frame), and ffmpeg encodes the result at the input's frame rate, with the
 * input's audio when it has some.
 *
 * Without an engine (`--engine` or `LIVE2DIFF_ENGINE`) it uses the default engine, whose weights
 * are random: the output is noise-like, and a notice says how to build a real engine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { extname } from "node:path";
import type { Frame } from "../mod.ts";
import { defaultStreamSize, loadEngine, parseDevice, parseSide, printNotice } from "./_engine.ts";

const USAGE = `Usage: deno task translate <in.mp4> <out.mp4> --prompt "<text>" [options]
  --prompt <text>     what the video should become (required)
  --engine <file>     engine file (default $LIVE2DIFF_ENGINE, else the default engine with RANDOM weights)
  --device <d>        cpu, cuda or auto (default auto)
  --size <n>          output width and height, a multiple of 64 (default 64 on the CPU, 512 on CUDA)
  --width/--height    output size when not square
  --steps <n>         denoising steps with --strength (default 2)
  --strength <x>      how much of each frame is re-imagined, (0, 1] (default: the engine's t_index_list)
  --seed <n>          noise seed (default 0)
  --max-frames <n>    stop after n input frames
  --crf <n>           x264/VP9 quality (default 18)
  --no-audio          do not copy the input's audio
  --ffmpeg <path>     ffmpeg binary (default $FFMPEG or ffmpeg on PATH; ffprobe beside it)
  --quiet             no progress bar`;

/** What ffprobe tells about the input's video stream. */
interface VideoInfo {
  width: number;
  height: number;
  fps: string;
  frames: number | null;
  hasAudio: boolean;
}

async function run(cmd: string, args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(ffmpegMissing(cmd));
    throw e;
  }
  if (!out.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout);
}

function ffmpegMissing(cmd: string): string {
  return `Cannot run "${cmd}": install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) ` +
    `or pass --ffmpeg /path/to/ffmpeg`;
}

async function probe(ffprobe: string, input: string): Promise<VideoInfo> {
  const json = JSON.parse(
    await run(ffprobe, [
      "-v",
      "error",
      "-show_entries",
      "stream=codec_type,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:format=duration",
      "-of",
      "json",
      input,
    ]),
  );
  const streams: Record<string, string | number>[] = json.streams ?? [];
  const v = streams.find((s) => s.codec_type === "video");
  if (!v) throw new Error(`"${input}" has no video stream`);
  const rate = (r: unknown) => {
    const [n, d] = String(r ?? "0/0").split("/").map(Number);
    return n && d ? n / d : 0;
  };
  const fps = rate(v.avg_frame_rate) ? String(v.avg_frame_rate) : rate(v.r_frame_rate) ? String(v.r_frame_rate) : "25";
  const duration = Number(v.duration ?? json.format?.duration);
  const frames = Number(v.nb_frames) > 0
    ? Number(v.nb_frames)
    : duration > 0 && rate(fps) > 0
    ? Math.round(duration * rate(fps))
    : null;
  return {
    width: Number(v.width),
    height: Number(v.height),
    fps,
    frames,
    hasAudio: streams.some((s) => s.codec_type === "audio"),
  };
}

/** Reads exact `size`-byte chunks from a byte stream. */
async function* chunks(stream: ReadableStream<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let filled = 0;
  for await (const piece of stream) {
    let off = 0;
    while (off < piece.byteLength) {
      const n = Math.min(size - filled, piece.byteLength - off);
      buf.set(piece.subarray(off, off + n), filled);
      filled += n;
      off += n;
      if (filled === size) {
        yield buf;
        buf = new Uint8Array(size);
        filled = 0;
      }
    }
  }
}

/** A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
class Progress {
  readonly #total: number | null;
  readonly #tty = Deno.stderr.isTerminal();
  readonly #start = performance.now();
  #lastDraw = 0;
  #lastDecile = -1;
  readonly #enc = new TextEncoder();

  constructor(total: number | null, readonly quiet: boolean) {
    this.#total = total;
  }

  update(done: number, final = false) {
    if (this.quiet) return;
    const now = performance.now();
    const elapsed = (now - this.#start) / 1000;
    const fps = done > 0 ? done / elapsed : 0;
    const total = this.#total !== null ? Math.max(this.#total, done) : null;
    const frac = total ? done / total : 0;
    const decile = Math.floor(frac * 10);
    if (!final && (this.#tty ? now - this.#lastDraw < 100 : decile === this.#lastDecile)) return;
    this.#lastDraw = now;
    this.#lastDecile = decile;
    const width = 30;
    const bar = total
      ? `[${"#".repeat(Math.round(frac * width)).padEnd(width, "-")}] ${String(Math.round(frac * 100)).padStart(3)}% `
      : "";
    const eta = total && fps > 0 ? ` ETA ${clock((total - done) / fps)}` : "";
    const line = `${bar}${done}${total ? `/${total}` : ""} frames  ${fps.toFixed(2)} fps  ${clock(elapsed)}${eta}`;
    Deno.stderr.writeSync(this.#enc.encode(this.#tty ? `\r\x1b[2K${line}${final ? "\n" : ""}` : `${line}\n`));
  }
}

function clock(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

function videoCodecArgs(output: string, crf: number): string[] {
  switch (extname(output).toLowerCase()) {
    case ".mp4":
    case ".mov":
    case ".m4v":
    case ".mkv":
      return ["-c:v", "libx264", "-preset", "medium", "-crf", String(crf), "-pix_fmt", "yuv420p"];
    case ".webm":
      return ["-c:v", "libvpx-vp9", "-crf", String(crf + 13), "-b:v", "0", "-pix_fmt", "yuv420p"];
    default:
      return ["-pix_fmt", "yuv420p"];
  }
}

async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      prompt: { type: "string" },
      engine: { type: "string" },
      device: { type: "string" },
      size: { type: "string" },
      width: { type: "string" },
      height: { type: "string" },
      steps: { type: "string" },
      strength: { type: "string" },
      seed: { type: "string" },
      "max-frames": { type: "string" },
      crf: { type: "string" },
      "no-audio": { type: "boolean", default: false },
      ffmpeg: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [input, output] = positionals;
  if (!input || !output || positionals.length !== 2) throw new UsageError("give an input and an output file");
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const int = (name: string, v: string | undefined, min: number, max: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
    }
    return n;
  };
  const seed = int("seed", values.seed, 0, 0xffffffff) ?? 0;
  const steps = int("steps", values.steps, 1, 4);
  const maxFrames = int("max-frames", values["max-frames"], 1, Number.MAX_SAFE_INTEGER);
  const crf = int("crf", values.crf, 0, 51) ?? 18;
  const strength = values.strength === undefined ? undefined : Number(values.strength);
  if (strength !== undefined && !(strength > 0 && strength <= 1)) throw new UsageError("--strength must be in (0, 1]");
  if (steps !== undefined && strength === undefined) throw new UsageError("--steps needs --strength");
  const device = parseDevice(values.device);

  const ffmpeg = values.ffmpeg ?? Deno.env.get("FFMPEG") ?? "ffmpeg";
  const ffprobe = ffmpeg.includes("/") ? ffmpeg.replace(/ffmpeg([^/]*)$/, "ffprobe$1") : "ffprobe";
  try {
    await Deno.stat(input);
  } catch {
    throw new Error(`Cannot read the input "${input}": no such file`);
  }
  const info = await probe(ffprobe, input);

  const engine = await loadEngine({ engine: values.engine, device });
  printNotice(engine);
  const side = values.size ? parseSide("size", values.size) : defaultStreamSize(engine);
  const width = values.width ? parseSide("width", values.width) : side;
  const height = values.height ? parseSide("height", values.height) : side;
  using stream = await engine.createStream({
    prompt: values.prompt,
    width,
    height,
    seed,
    ...(strength !== undefined ? { strength, steps: steps ?? 2 } : {}),
  });
  const total = maxFrames !== undefined && info.frames !== null
    ? Math.min(maxFrames, info.frames)
    : maxFrames ?? info.frames;
  console.error(
    `translate: ${input} (${info.width}x${info.height}, ${info.fps} fps${
      info.frames ? `, ${info.frames} frames` : ""
    }) -> ` +
      `${output} (${width}x${height}, ${engine.device}, ${stream.steps} steps)`,
  );

  const decoder = new Deno.Command(ffmpeg, {
    args: [
      "-v",
      "error",
      "-nostdin",
      "-i",
      input,
      "-map",
      "0:v:0",
      ...(maxFrames !== undefined ? ["-frames:v", String(maxFrames)] : []),
      "-vf",
      `scale=${width}:${height}:force_original_aspect_ratio=increase:flags=area,crop=${width}:${height}`,
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "pipe:1",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const audio = info.hasAudio && !values["no-audio"];
  const encoder = new Deno.Command(ffmpeg, {
    args: [
      "-v",
      "error",
      "-y",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      `${width}x${height}`,
      "-framerate",
      info.fps,
      "-i",
      "pipe:0",
      ...(audio ? ["-i", input, "-map", "0:v:0", "-map", "1:a:0?", "-c:a", "aac", "-shortest"] : []),
      ...videoCodecArgs(output, crf),
      ...([".mp4", ".mov", ".m4v"].includes(extname(output).toLowerCase()) ? ["-movflags", "+faststart"] : []),
      output,
    ],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const decErr = new Response(decoder.stderr).text();
  const encErr = new Response(encoder.stderr).text();
  const sink = encoder.stdin.getWriter();
  const progress = new Progress(total, values.quiet);
  let written = 0;
  const write = async (frame: Frame) => {
    await sink.write(frame.data);
    written++;
    progress.update(written);
  };

  let read = 0;
  let last: Uint8Array | null = null;
  const warm: Frame[] = [];
  try {
    progress.update(0, true);
    for await (const data of chunks(decoder.stdout, width * height * 3)) {
      read++;
      last = data;
      const frame: Frame = { data, width, height, channels: 3 };
      if (warm.length < 8) {
        warm.push(frame);
        if (warm.length === 8) { for (const out of await stream.warmup(warm)) await write(out); }
        continue;
      }
      const out = await stream.push(frame);
      if (out) await write(out);
    }
    if (read === 0) throw new Error(`No frames decoded from "${input}": ${(await decErr).trim()}`);
    if (warm.length < 8) { // a short clip: pad the warm-up with its last frame
      const n = warm.length;
      while (warm.length < 8) warm.push(warm[n - 1]!);
      for (const out of (await stream.warmup(warm)).slice(0, n)) await write(out);
    } else { // flush: the last `latency` outputs come from pushes after the end
      for (let i = 0; i < stream.latency; i++) {
        const out = await stream.push({ data: last!, width, height, channels: 3 });
        if (out) await write(out);
      }
    }
    await sink.close();
  } catch (e) {
    try {
      decoder.kill();
    } catch { /* exited */ }
    await sink.abort().catch(() => {});
    await Promise.all([decoder.status, encoder.status]);
    throw e;
  }
  const [dec, enc] = await Promise.all([decoder.status, encoder.status]);
  if (!dec.success) throw new Error(`ffmpeg could not decode "${input}": ${(await decErr).trim()}`);
  if (!enc.success) throw new Error(`ffmpeg could not encode "${output}": ${(await encErr).trim()}`);
  progress.update(written, true);
  console.error(`translate: wrote ${written} frames to ${output}`);
  if (written !== read) throw new Error(`internal: ${read} frames in, ${written} out`);
  return 0;
}

class UsageError extends Error {}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    console.error(e instanceof UsageError ? `error: ${message}\n\n${USAGE}` : `error: ${message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
