// The CUDA layout op test (cuda/build/test_cuda_layout, built by `deno task build:native`): without a
// GPU it must exit 77 saying why (never 0); its harness and small cases run with the CPU standing in
// for CUDA (L2D_TEST_SELF=1 --small); and its case table (`--list`, no GPU needed) must hold
// linear_to_image at every proj_out shape of the UNet's spatial transformers and motion modules at a
// 64x64 latent with T = 2 and 3, with and without bias and residual.
import assert from "node:assert/strict";
import { assertPassesOrNoGpu, runNativeBin } from "./_fixtures/native_bin.ts";

const run = (args: string[] = [], env: Record<string, string> = {}) => runNativeBin("test_cuda_layout", args, env);

Deno.test("test_cuda_layout passes on a GPU, and without one exits 77 saying why", async () => {
  assertPassesOrNoGpu("test_cuda_layout", await run());
});

Deno.test("test_cuda_layout harness and small cases run with the CPU standing in for CUDA", async () => {
  const { code, text } = await run(["--small"], { L2D_TEST_SELF: "1" });
  assert.equal(code, 0, text);
  assert.match(text, /test_cuda_layout: \d+ cases in [\d.]+ s: all ok/);
  assert.match(text, /l2i\/small_odd\s+cuda-fp16\s+y\s+max_abs 0\.000e\+00/);
  // Unfused, the composition runs and the bounds follow the kernel path.
  const unfused = await run(["--small"], { L2D_TEST_SELF: "1", L2D_FUSE: "qkv" });
  assert.equal(unfused.code, 0, unfused.text);
  assert.match(unfused.text, /layout fusion off/);
});

Deno.test("test_cuda_layout covers every proj_out shape of the UNet (--list, no GPU needed)", async () => {
  const { code, text } = await run(["--list"]);
  assert.equal(code, 0, text);
  const rows = text.trim().split("\n").map((line) => {
    const [label, method] = line.split(/\s+/);
    const m = line.match(/t\[(\d+),(\d+),(\d+)\] w\[(\d+),(\d+)\] -> \[(\d+),(\d+),(\d+),(\d+)\]/);
    assert.ok(m, line);
    return { label, method, dims: m.slice(1).map(Number) };
  });
  for (const r of rows) {
    const [n, p, k, o, k2, n2, o2, h, w] = r.dims;
    assert.equal(r.method, "linear_to_image", r.label);
    assert.ok(k === k2 && n === n2 && o === o2 && p === h * w, `consistent shapes in ${r.label}`);
  }
  for (const t of [2, 3]) {
    for (const [c, h] of [[320, 64], [640, 32], [1280, 16], [1280, 8]]) {
      const want = [t, h * h, c, c, c, t, c, h, h];
      assert.ok(
        rows.some((r) => r.dims.every((v, i) => v === want[i])),
        `no linear_to_image case for T=${t} C=${c} at ${h}x${h}`,
      );
    }
  }
  assert.ok(
    rows.some((r) => r.dims.every((v, i) => v === [1, 576, 768, 768, 768, 1, 768, 24, 24][i])),
    "no case for the MiDaS readout at 384x384",
  );
  for (const what of ["nobias", "noresidual", "plain", "odd"]) {
    assert.ok(rows.some((r) => r.label.includes(what)), `no ${what} case`);
  }
  assert.equal(new Set(rows.map((r) => r.label)).size, rows.length, "labels are unique");
});
