/**
 * The native test programs CMake builds next to the library (`cuda/build/<name>`, made by
 * `deno task build:native`): run one and collect its exit code and output, and the contract every
 * CUDA op test keeps on a machine without a GPU.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

/** The build folder of the native library and its test programs. */
export const NATIVE_BUILD = fileURLToPath(new URL("../../cuda/build/", import.meta.url));

/** Exit code and stdout + stderr of one run. */
export interface NativeRun {
  code: number;
  text: string;
}

/** Runs `cuda/build/<name>` with args and extra environment; fails the test if it was not built. */
export async function runNativeBin(
  name: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<NativeRun> {
  const path = NATIVE_BUILD + name;
  try {
    await Deno.stat(path);
  } catch {
    assert.fail(`${path} is missing: run \`deno task build:native\``);
  }
  const { code, stdout, stderr } = await new Deno.Command(path, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  return { code, text: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
}

/**
 * A CUDA op test's full run: on a GPU it passes ("all ok"); where CUDA cannot start it exits 77 and
 * says why (a driver, device or CUDA reason), never 0.
 */
export function assertPassesOrNoGpu(name: string, { code, text }: NativeRun): void {
  const noGpu = text.match(new RegExp(`^${name}: no GPU: (.+?)\\s+FAIL$`, "m"));
  if (noGpu) {
    assert.equal(code, 77, text);
    assert.match(noGpu[1], /CUDA|driver|device/, text);
  } else {
    assert.equal(code, 0, text);
    assert.match(text, /all ok/);
  }
}
