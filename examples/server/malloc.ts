/**
 * glibc heap tuning for the long-running server process (Linux with glibc only; elsewhere every call
 * is a no-op that returns false).
 *
 * Why: each stream allocates tens of MB of native buffers (latents, KV caches, staging), from the
 * engine's worker threads. glibc gives busy threads their own arenas (up to 8 per core) and keeps
 * freed memory in them, so the RSS of a server whose clients come and go swings by hundreds of MB
 * and plateaus high. Fewer arenas ({@linkcode limitMallocArenas}) make freed blocks reusable by
 * the next stream, and {@linkcode trimMalloc} after a stream is closed returns free pages to the
 * system.
 *
 * Measured on the CPU server (`deno task soak --minutes 8 --clients 4`, 64x64): no clear change in
 * RSS, whose swings there are the backend's working memory inside each push (README); a trim
 * itself gives freed heap back (tests/server_malloc_test.ts). `MALLOC_MMAP_THRESHOLD_=1048576`
 * lowers the soak's RSS by ~30% but makes CPU pushes ~1.5x slower, so it is left to operators.
 *
 * @module
 */

/** mallopt's parameter number for the arena limit (glibc malloc.h: M_ARENA_MAX). */
const M_ARENA_MAX = -8;

type Libc = { mallopt(param: number, value: number): number; malloc_trim(pad: bigint): number };
let libc: Libc | null | undefined;

function openLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") return libc;
  try {
    const lib = Deno.dlopen("libc.so.6", {
      mallopt: { parameters: ["i32", "i32"], result: "i32" },
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    libc = lib.symbols as unknown as Libc;
  } catch { /* not glibc (musl) or no FFI permission: leave the heap as it is */ }
  return libc;
}

/**
 * Limits glibc to `arenas` malloc arenas for arenas created from now on, unless `MALLOC_ARENA_MAX`
 * is set (the operator's choice wins; glibc read it at start-up). Call it before the engine
 * starts its threads. Returns true when the limit was applied.
 */
export function limitMallocArenas(arenas: number): boolean {
  if (!Number.isInteger(arenas) || arenas < 1) throw new RangeError(`arenas must be a positive integer, got ${arenas}`);
  if (Deno.env.get("MALLOC_ARENA_MAX")) return false;
  return openLibc()?.mallopt(M_ARENA_MAX, arenas) === 1;
}

/**
 * Returns free heap memory to the system (`malloc_trim(0)`). It locks each arena in turn, so call
 * it between native calls (for example right after a stream was closed). Returns true when memory
 * was released.
 */
export function trimMalloc(): boolean {
  return openLibc()?.malloc_trim(0n) === 1;
}
