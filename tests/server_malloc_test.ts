/**
 * The server's glibc heap tuning (examples/server/malloc.ts): the arena limit applies on glibc
 * unless MALLOC_ARENA_MAX is set (the operator's choice wins), bad limits are a RangeError, and a
 * trim after freeing a big block gives memory back. Each case runs in a child process so this
 * process's heap is left alone.
 */

import assert from "node:assert/strict";

const MODULE = new URL("../examples/server/malloc.ts", import.meta.url).href;
const glibc = Deno.build.os === "linux" && (() => {
  try {
    return Deno.statSync("/lib/x86_64-linux-gnu/libc.so.6").isFile ||
      Deno.statSync("/lib/aarch64-linux-gnu/libc.so.6").isFile;
  } catch {
    return false;
  }
})();

async function runChild(code: string, env: Record<string, string> = {}): Promise<string> {
  const script = `import { limitMallocArenas, trimMalloc } from ${JSON.stringify(MODULE)};\n${code}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-ffi", script],
    env,
    clearEnv: false,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return text;
}

Deno.test({
  name: "malloc: the arena limit applies unless MALLOC_ARENA_MAX is set; bad limits are a RangeError",
  ignore: !glibc,
  fn: async () => {
    assert.equal(await runChild("console.log(limitMallocArenas(2));", { MALLOC_ARENA_MAX: "" }), "true");
    assert.equal(await runChild("console.log(limitMallocArenas(2));", { MALLOC_ARENA_MAX: "4" }), "false");
    assert.equal(
      await runChild(
        "for (const n of [0, -1, 1.5, NaN]) { try { limitMallocArenas(n); console.log('accepted'); } catch (e) { console.log(e.name); } }",
      ),
      "RangeError\nRangeError\nRangeError\nRangeError",
    );
  },
});

Deno.test({
  name: "malloc: trimMalloc gives freed heap pages back to the system",
  ignore: !glibc,
  fn: async () => {
    // Many 64 KiB blocks (under the mmap threshold: they live in the heap), all freed but the last
    // one, which pins the heap's top so glibc cannot shrink it by itself. Only a trim releases them.
    const code = `
      const libc = Deno.dlopen("libc.so.6", { malloc: { parameters: ["usize"], result: "pointer" }, free: { parameters: ["pointer"], result: "void" } }).symbols;
      const rss = () => Number(Deno.readTextFileSync("/proc/self/statm").split(" ")[1]) * 4096 / 2 ** 20;
      const blocks = [];
      for (let i = 0; i < 4096; i++) {
        const p = libc.malloc(65536n);
        new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, 65536)).fill(1); // touched: counted in RSS
        blocks.push(p);
      }
      const full = rss();
      for (const p of blocks.slice(0, -1)) libc.free(p);
      const freed = rss();
      const trimmed = trimMalloc();
      console.log(JSON.stringify({ full, freed, after: rss(), trimmed }));
    `;
    const r = JSON.parse(await runChild(code));
    console.log(
      `RSS: ${r.full.toFixed(0)} MiB full, ${r.freed.toFixed(0)} MiB after free, ${r.after.toFixed(0)} MiB after trim`,
    );
    assert.ok(r.freed - r.after > 128, `a trim returned ${(r.freed - r.after).toFixed(0)} MiB (${JSON.stringify(r)})`);
    assert.equal(r.trimmed, true);
  },
});
