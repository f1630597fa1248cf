/**
 * examples/translate.ts end to end: a short generated clip (ffmpeg testsrc + a tone) through the
 * CPU default engine; the output has every frame, the stream size, the input's rate and its audio.
 * Needs ffmpeg/ffprobe: the system's, else the static builds of npm packages (tests/_fixtures/ffmpeg.ts);
 * ignored, saying what to install, when neither is available. The argument checks run without them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { findFfmpeg } from "./_fixtures/ffmpeg.ts";

const SCRIPT = new URL("../examples/translate.ts", import.meta.url).pathname;

const TOOLS = await findFfmpeg();
const FFMPEG = "ffmpeg" in TOOLS ? TOOLS : undefined;

async function translate(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function probe(file: string) {
  const out = await new Deno.Command(FFMPEG!.ffprobe, {
    args: [
      "-v",
      "error",
      "-count_frames",
      "-show_entries",
      "stream=codec_type,width,height,nb_read_frames,avg_frame_rate",
      "-of",
      "json",
      file,
    ],
    stdout: "piped",
  }).output();
  assert.ok(out.success);
  return JSON.parse(new TextDecoder().decode(out.stdout)).streams as Record<string, string | number>[];
}

Deno.test({
  name: `translate: a short clip through the default engine${
    FFMPEG
      ? (FFMPEG.source === "npm" ? " (npm static ffmpeg)" : "")
      : ` (ignored: ${"missing" in TOOLS && TOOLS.missing})`
  }`,
  ignore: !FFMPEG,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "l2d-translate-" });
    try {
      const input = join(dir, "in.mp4"), output = join(dir, "out.mp4");
      const gen = await new Deno.Command(FFMPEG!.ffmpeg, {
        args: [
          "-v",
          "error",
          "-y",
          "-f",
          "lavfi",
          "-i",
          "testsrc=size=160x120:rate=10",
          "-f",
          "lavfi",
          "-i",
          "sine=frequency=440:sample_rate=44100",
          "-t",
          "1.2",
          "-c:v",
          "libx264",
          "-pix_fmt",
          "yuv420p",
          "-c:a",
          "aac",
          "-shortest",
          input,
        ],
        stderr: "piped",
      }).output();
      assert.ok(gen.success, new TextDecoder().decode(gen.stderr));

      const { code, stderr } = await translate([
        input,
        output,
        "--prompt",
        "a watercolor",
        "--strength",
        "0.5",
        "--steps",
        "2",
        "--size",
        "64",
        "--ffmpeg",
        FFMPEG!.ffmpeg,
      ]);
      assert.equal(code, 0, stderr);
      assert.match(stderr, /NOTICE: This engine has RANDOM weights/, "the default engine's notice is shown");
      assert.match(stderr, /deno task build-engine/);
      assert.match(stderr, /\[#{30}\] 100% 12\/12 frames/, "a progress bar that ends at 100%");
      assert.match(stderr, /wrote 12 frames/);

      const streams = await probe(output);
      const video = streams.find((s) => s.codec_type === "video")!;
      assert.equal(video.width, 64);
      assert.equal(video.height, 64);
      assert.equal(Number(video.nb_read_frames), 12, "one output frame per input frame");
      assert.equal(video.avg_frame_rate, "10/1", "the input's frame rate");
      assert.ok(streams.some((s) => s.codec_type === "audio"), "the input's audio is kept");

      // The output is not the input: decode both at 64x64 and compare.
      const raw = async (file: string) =>
        (await new Deno.Command(FFMPEG!.ffmpeg, {
          args: [
            "-v",
            "error",
            "-i",
            file,
            "-vf",
            "scale=64:64:force_original_aspect_ratio=increase,crop=64:64",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
          ],
          stdout: "piped",
        }).output()).stdout;
      const [a, b] = [await raw(input), await raw(output)];
      assert.equal(a.byteLength, b.byteLength);
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff += Math.abs(a[i]! - b[i]!);
      assert.ok(diff / a.length > 10, `the frames were translated (mean difference ${(diff / a.length).toFixed(1)})`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("translate: bad arguments get a usage message", async () => {
  const noPrompt = await translate(["in.mp4", "out.mp4"]);
  assert.equal(noPrompt.code, 2);
  assert.match(noPrompt.stderr, /--prompt is required/);
  assert.match(noPrompt.stderr, /Usage: deno task translate/);
  const oneFile = await translate(["in.mp4", "--prompt", "x"]);
  assert.equal(oneFile.code, 2);
  assert.match(oneFile.stderr, /give an input and an output file/);
  const badStrength = await translate(["in.mp4", "out.mp4", "--prompt", "x", "--strength", "3"]);
  assert.equal(badStrength.code, 2);
  assert.match(badStrength.stderr, /--strength must be in \(0, 1\]/);
  const missing = await translate(["/nonexistent/in.mp4", "out.mp4", "--prompt", "x"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Cannot read the input "\/nonexistent\/in.mp4"/);
});
