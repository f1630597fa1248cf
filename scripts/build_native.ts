/**
 * `deno task build:native [--if-needed] [--cuda on|off]`: configures and builds liblive2diff with
 * CMake into cuda/build. `--if-needed` skips the build when the library is newer than every source.
 * Fails loudly (non-zero exit, the tool's output) when a prerequisite is missing or a step fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const cudaDir = `${root}cuda`;
const buildDir = `${cudaDir}/build`;
const libPath = `${buildDir}/liblive2diff.so`;

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.name === "build" || e.name.startsWith("build-")) continue;
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) newest = Math.max(newest, await newestSource(p));
    else newest = Math.max(newest, (await Deno.stat(p)).mtime?.getTime() ?? 0);
  }
  return newest;
}

async function upToDate(): Promise<boolean> {
  try {
    const lib = (await Deno.stat(libPath)).mtime?.getTime() ?? 0;
    return lib >= await newestSource(cudaDir);
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" }).spawn();
  } catch (e) {
    throw new Error(
      `Cannot run "${cmd}": ${e instanceof Error ? e.message : e}. Install it (Debian: apt-get install cmake g++)`,
    );
  }
  const { code } = await child.status;
  if (code !== 0) throw new Error(`"${cmd} ${args.join(" ")}" failed with exit code ${code}`);
}

/** Builds the native library (or checks it is current). */
export async function buildNative(
  options: { ifNeeded?: boolean; cuda?: string; jobs?: number } = {},
): Promise<string> {
  if (options.ifNeeded && await upToDate()) return libPath;
  const configure = ["-S", cudaDir, "-B", buildDir, "-DCMAKE_BUILD_TYPE=Release"];
  if (options.cuda) configure.push(`-DL2D_CUDA=${options.cuda.toUpperCase()}`);
  await run("cmake", configure);
  await run("cmake", ["--build", buildDir, "-j", String(options.jobs ?? navigator.hardwareConcurrency ?? 2)]);
  return libPath;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "if-needed": { type: "boolean", default: false }, cuda: { type: "string" } },
  });
  try {
    const path = await buildNative({ ifNeeded: values["if-needed"], cuda: values.cuda });
    if (!values["if-needed"]) console.error(`built ${path}`);
  } catch (e) {
    console.error(`build:native: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
