// The golden `pipeline` case as a streaming fixture: its tiny engine built for the CPU into a
// fresh temporary folder, and its input video as frames. Shared by the stream tests.
import { join } from "node:path";
import { buildFromStyleConfig } from "../../engines/build.ts";
import { openSafetensors } from "../../ffi/formats/mod.ts";
import type { Frame } from "../../mod.ts";
import type { HostTensor } from "../../ffi/host_tensor.ts";
import { goldenPath } from "./golden_root.ts";

/** What {@link buildPipelineFixture} returns. */
export interface PipelineFixture {
  /** The case folder and its parsed case.json (`config` holds width, seed, ...). */
  caseDir: string;
  // deno-lint-ignore no-explicit-any
  caseJson: any;
  /** The stream size (case.json config.width). */
  size: number;
  /** The temporary folder (the caller removes it) and the engine file in it. */
  dir: string;
  enginePath: string;
  /** The case's input video, uint8 [n, h, w, 3]. */
  video: HostTensor;
  n: number;
  h: number;
  w: number;
  /** Frame i of the video (a copy). */
  frame(i: number): Frame;
}

/** Builds the pipeline case's engine into a new temporary folder named with `prefix`. */
export async function buildPipelineFixture(prefix: string): Promise<PipelineFixture> {
  const caseDir = goldenPath("cases/pipeline");
  const caseJson = JSON.parse(await Deno.readTextFile(join(caseDir, "case.json")));
  const dir = await Deno.makeTempDir({ prefix });
  const enginePath = join(dir, "tiny.l2de");
  const file = (key: string) => goldenPath(caseJson.model_files[key].split(" ")[0]);
  await buildFromStyleConfig(file("live2diff_config"), {
    out: enginePath,
    target: "cpu",
    root: goldenPath("."),
    taesd: file("vae"),
    depth: file("depth_model"),
    motion: file("motion_module"),
    quiet: true,
    log: () => {},
  });
  const video = await (async () => {
    using f = await openSafetensors(join(caseDir, "inputs.safetensors"));
    return await f.read("video_u8");
  })();
  const [n, h, w] = video.shape as [number, number, number];
  return {
    caseDir,
    caseJson,
    size: Number(caseJson.config.width),
    dir,
    enginePath,
    video,
    n,
    h,
    w,
    frame: (i) => ({ data: video.data.slice(i * h * w * 3, (i + 1) * h * w * 3), width: w, height: h, channels: 3 }),
  };
}
