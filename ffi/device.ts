/**
 * The `device` option of {@linkcode Engine.load}: `"auto"` runs on CUDA when it can start and
 * otherwise on the CPU, saying why once per process (a console warning); `"cuda"` on a machine
 * where CUDA cannot start throws one line naming the cause (no driver, a driver older than the
 * runtime, no device) with the driver and runtime versions and what to do.
 *
 * @module
 */
import { EngineError } from "./errors.ts";
import { backendAvailable, type BackendName, Context } from "./native.ts";

let warnedFallback = false;

/**
 * Why CUDA cannot start here, in one line, or `undefined` when it can. The native library's own
 * reason (it probes the driver), got by trying to create a CUDA context: done only when CUDA is
 * already known to be unavailable, so it never creates one for nothing.
 */
export function cudaUnavailableReason(): string | undefined {
  if (backendAvailable("cuda")) return undefined;
  try {
    Context.create("cuda").close();
    return undefined;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return message.replace(/^Cannot create a cuda context: /, "").replace(/\s*\n\s*/g, " ");
  }
}

/**
 * The backend to use for a requested device (`"auto"` when undefined).
 *
 * @example
 * ```ts
 * import { resolveDevice } from "./device.ts";
 * console.assert(resolveDevice("cpu") === "cpu");
 * ```
 */
export function resolveDevice(requested: BackendName | "auto" | undefined): BackendName {
  if (requested === "cpu") return "cpu";
  if (requested !== undefined && requested !== "auto" && requested !== "cuda") {
    throw new TypeError(`Unknown device "${requested}" (expected "cpu", "cuda" or "auto")`);
  }
  const why = cudaUnavailableReason();
  if (requested === "cuda") {
    if (why !== undefined) throw new EngineError("UNSUPPORTED", `Cannot use device "cuda": ${why}`);
    return "cuda";
  }
  if (why === undefined) return "cuda";
  if (!warnedFallback) {
    warnedFallback = true;
    console.warn(`live2diff: device "auto" runs on the CPU: ${why}`);
  }
  return "cpu";
}
