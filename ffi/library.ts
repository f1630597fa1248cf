/**
 * Locates and opens liblive2diff once, lazily. Search order: the `LIVE2DIFF_LIB` environment
 * variable, then the local CMake build (`cuda/build/liblive2diff.so`). On failure the error lists
 * every path tried and the command that builds the library. The ABI version is checked at load.
 *
 * @module
 */

import { EngineError, STATUS_CODES } from "./errors.ts";
import { ABI_VERSION, symbols } from "./symbols.ts";

/** The opened library's symbol functions. */
export type NativeSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

let library: Deno.DynamicLibrary<typeof symbols> | undefined;

function libraryFileName(): string {
  switch (Deno.build.os) {
    case "darwin":
      return "liblive2diff.dylib";
    case "windows":
      return "live2diff.dll";
    default:
      return "liblive2diff.so";
  }
}

/** The paths tried, in order. */
export function libraryCandidates(): string[] {
  const paths: string[] = [];
  const fromEnv = Deno.env.get("LIVE2DIFF_LIB");
  if (fromEnv) paths.push(fromEnv);
  paths.push(new URL(`../cuda/build/${libraryFileName()}`, import.meta.url).pathname);
  return paths;
}

/** Opens the library (once) and returns its symbols. Throws EngineError("LIBRARY") when missing. */
export function native(): NativeSymbols {
  if (library) return library.symbols;
  const tried: string[] = [];
  for (const path of libraryCandidates()) {
    try {
      Deno.statSync(path);
    } catch {
      tried.push(`${path} (not found)`);
      continue;
    }
    let lib: Deno.DynamicLibrary<typeof symbols>;
    try {
      lib = Deno.dlopen(path, symbols);
    } catch (e) {
      tried.push(`${path} (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    const version = lib.symbols.l2d_abi_version();
    if (version !== ABI_VERSION) {
      lib.close();
      tried.push(`${path} (ABI version ${version}, expected ${ABI_VERSION}: rebuild it)`);
      continue;
    }
    library = lib;
    return lib.symbols;
  }
  throw new EngineError(
    "LIBRARY",
    `Cannot load liblive2diff: tried\n  ${tried.join("\n  ")}\nBuild it with \`deno task build:native\` ` +
      "or set LIVE2DIFF_LIB to its path",
  );
}

const encoder = new TextEncoder();

/**
 * A NUL-terminated UTF-8 copy of a string for `const char*` parameters. Strings that UTF-8 cannot
 * carry unchanged are refused: an unpaired surrogate would become U+FFFD, so two different names
 * could reach the library as the same one.
 */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  if (!s.isWellFormed()) {
    throw new TypeError(`Cannot pass a string with an unpaired surrogate to the native library`);
  }
  const bytes = encoder.encode(s);
  if (bytes.includes(0)) {
    throw new TypeError(`Cannot pass a string with a NUL character to the native library`);
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Reads a NUL-terminated C string returned by the library. */
export function readCString(ptr: Deno.PointerValue): string {
  if (ptr === null) return "";
  return Deno.UnsafePointerView.getCString(ptr);
}

/**
 * Throws an {@linkcode EngineError} for a non-zero status, with the library's error text: the
 * per-thread last error, or `handleError()` for calls that ran on a worker thread (nonblocking).
 */
export function unwrap(status: number, action: string, handleError?: () => Deno.PointerValue): void {
  if (status === 0) return;
  const lib = native();
  const code = STATUS_CODES[status as keyof typeof STATUS_CODES] ?? "INTERNAL";
  const detail = readCString(handleError ? handleError() : lib.l2d_last_error());
  throw new EngineError(
    code === "OK" ? "INTERNAL" : code,
    `${action}: ${detail || readCString(lib.l2d_status_string(status))}`,
  );
}

/** A `void*` out-parameter slot. */
export function pointerSlot(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(1);
}

/** The pointer stored in a slot filled by the library. */
export function slotPointer(slot: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(slot[0]!);
}
