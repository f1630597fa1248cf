/**
 * Finds ffmpeg + ffprobe for the tests: the system's when both are on PATH, else (Linux x86-64)
 * the static builds that the npm packages `@ffmpeg-installer/linux-x64` and
 * `@ffprobe-installer/linux-x64` ship inside their tarballs (no install script involved). Deno
 * unpacks ffprobe without its executable bit, so both are linked/copied once into
 * `$LIVE2DIFF_CACHE_DIR/ffmpeg-npm-<versions>/` (default `~/.cache/live2diff`), side by side as
 * examples/translate.ts expects (`--ffmpeg <dir>/ffmpeg` finds `<dir>/ffprobe`).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the tools are; `ffmpeg`/`ffprobe` are commands or absolute paths. */
export interface FfmpegTools {
  ffmpeg: string;
  ffprobe: string;
  /** "system" (on PATH) or "npm" (the packages' static builds). */
  source: "system" | "npm";
}

/** What to install when neither the system nor npm can provide the tools. */
export const FFMPEG_HINT = "install ffmpeg (Debian: apt-get install ffmpeg)";

function runs(cmd: string): boolean {
  try {
    return new Deno.Command(cmd, { args: ["-version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

async function packageDir(specifier: string): Promise<string> {
  // Loading the package's package.json makes Deno fetch the package; resolving it then gives its folder.
  await import(specifier, { with: { type: "json" } });
  return dirname(fileURLToPath(import.meta.resolve(specifier)));
}

async function npmTools(): Promise<FfmpegTools> {
  const ffmpegDir = await packageDir("@ffmpeg-installer/linux-x64/package.json");
  const ffprobeDir = await packageDir("@ffprobe-installer/linux-x64/package.json");
  const cache = Deno.env.get("LIVE2DIFF_CACHE_DIR") ?? join(Deno.env.get("HOME") ?? ".", ".cache", "live2diff");
  const versions = [ffmpegDir, ffprobeDir].map((d) => d.split("/").pop()).join("-");
  const dir = join(cache, `ffmpeg-npm-${versions}`);
  const tools: FfmpegTools = { ffmpeg: join(dir, "ffmpeg"), ffprobe: join(dir, "ffprobe"), source: "npm" };
  if (runs(tools.ffmpeg) && runs(tools.ffprobe)) return tools;
  // Built in a temporary folder and renamed into place: concurrent runs never see half a copy.
  await Deno.mkdir(cache, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: cache, prefix: ".ffmpeg-npm-" });
  try {
    await Deno.symlink(join(ffmpegDir, "ffmpeg"), join(tmp, "ffmpeg"));
    await Deno.copyFile(join(ffprobeDir, "ffprobe"), join(tmp, "ffprobe"));
    await Deno.chmod(join(tmp, "ffprobe"), 0o755);
    await Deno.rename(tmp, dir).catch(() => {}); // another run may have won the race: its copy is the same
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return tools;
}

/** The tools, or why there are none (the caller reports its test as ignored with that line). */
export async function findFfmpeg(): Promise<FfmpegTools | { missing: string }> {
  if (runs("ffmpeg") && runs("ffprobe")) return { ffmpeg: "ffmpeg", ffprobe: "ffprobe", source: "system" };
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return { missing: FFMPEG_HINT };
  try {
    const tools = await npmTools();
    if (runs(tools.ffmpeg) && runs(tools.ffprobe)) return tools;
    return { missing: `the npm static ffmpeg/ffprobe do not run here: ${FFMPEG_HINT}` };
  } catch (e) {
    return { missing: `cannot fetch the npm static ffmpeg (${e instanceof Error ? e.message : e}): ${FFMPEG_HINT}` };
  }
}
