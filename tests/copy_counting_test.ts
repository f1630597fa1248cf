// Every memory copy or fill the CUDA backend issues is counted (l2d_context_stats "launches" ->
// "copies", apart from the kernel launches; the bench's "1 graph launch + the copies" per frame): a
// cudaMemcpy* / cudaMemset* call in cuda/src must go through CUDA_COPY (common.cuh), which checks it
// and bumps the copy tally. A source scan, so it runs without a GPU.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../cuda/src/", import.meta.url));

// Calls that are not the backend's work on a context (so not counted), with why.
const EXEMPT: Record<string, string> = {
  // philox_normal_device: a self-test helper on its own allocation, not a context's work.
  "backends/cuda/backend_cuda.cu: const cudaError_t copy = cudaMemcpy(": "Philox self-test helper",
};

async function* sources(dir: string, rel = ""): AsyncGenerator<[string, string]> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`, name = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) yield* sources(path, name);
    else if (/\.(cu|cuh|cpp|h)$/.test(e.name)) yield [name, await Deno.readTextFile(path)];
  }
}

Deno.test("every cudaMemcpy*/cudaMemset* in cuda/src goes through CUDA_COPY (counted as a copy)", async () => {
  const uncounted: string[] = [];
  let counted = 0;
  for await (const [name, text] of sources(root)) {
    for (const line of text.split("\n")) {
      const code = line.replace(/\/\/.*$/, "");
      for (const m of code.matchAll(/\bcuda(?:Memcpy|Memset)\w*\s*\(/g)) {
        const before = code.slice(0, m.index);
        if (/CUDA_COPY\(\s*$/.test(before)) {
          counted++;
          continue;
        }
        const key = `${name}: ${code.slice(0, m.index! + m[0].length).trim()}`;
        if (!(key in EXEMPT)) uncounted.push(key);
      }
    }
  }
  assert.deepEqual(uncounted, [], "wrap these in CUDA_COPY(...) so l2d_context_stats counts them");
  assert.ok(counted >= 15, `only ${counted} counted copies found: did the scan break?`);
});
