// Runs the native test programs CMake builds next to the library: the plain-C compile of l2d.h with
// the status/error contract (test_abi_c), Philox known answers in C++ (test_philox), the own
// tensor-core GEMM's index formulas through an emulation of ldmatrix / mma.sync
// (test_gemm_tc_layout), the fast GroupNorm's tokens-output tiles (test_norm_tokens_tile), the CUDA
// backend's device guard over a mock runtime (test_device_guard), and the CUDA op test (test_cuda_ops): on a machine where CUDA cannot start it must exit 77 with
// the reason (never 0), its case table (`--list`, no GPU needed) must cover the shapes the networks
// run, and the harness itself is checked with the CPU standing in for the device
// (L2D_TEST_SELF=1 --small).
import assert from "node:assert/strict";
import { assertPassesOrNoGpu, runNativeBin as run } from "./_fixtures/native_bin.ts";

for (const name of ["test_abi_c", "test_philox", "test_gemm_tc_layout", "test_norm_tokens_tile", "test_device_guard"]) {
  Deno.test(`native program ${name} passes`, async () => {
    const { code, text } = await run(name);
    assert.equal(code, 0, text);
    assert.match(text, /ok|passed/i);
  });
}

Deno.test("test_cuda_ops passes on a GPU, and without one exits 77 saying why", async () => {
  assertPassesOrNoGpu("test_cuda_ops", await run("test_cuda_ops"));
});

Deno.test("test_cuda_ops harness and small cases run with the CPU standing in for CUDA", async () => {
  const { code, text } = await run("test_cuda_ops", ["--small"], { L2D_TEST_SELF: "1" });
  assert.equal(code, 0, text);
  assert.match(text, /test_cuda_ops: \d+ cases in [\d.]+ s: all ok/);
  // The error case really errs, and the bounds are reported.
  assert.match(text, /embedding\/out_of_range\s+cuda-fp16\s+status cpu=1 dev=1 \(want 1\)\n/);
});

Deno.test("test_cuda_ops covers the shapes the networks run (--list, no GPU needed)", async () => {
  const { code, text } = await run("test_cuda_ops", ["--list"]);
  assert.equal(code, 0, text);
  const rows = text.trim().split("\n").map((line) => {
    const [label, method, size, ...rest] = line.split(/\s+/);
    return { label, method, size, rest: rest.join(" ") };
  });
  const num = (row: { rest: string }, key: string) =>
    Number(row.rest.match(new RegExp(`\\b${key}=(\\d+)`))?.[1] ?? NaN);
  const has = (what: string, pred: (r: (typeof rows)[number]) => boolean) =>
    assert.ok(rows.some(pred), `no case for ${what} in:\n${text}`);
  // The 128x128 8-warp GEMM tile at the UNet's feed-forward and 64x64-level conv shapes.
  has(
    "linear 8192x2560 on the 128x128 tile",
    (r) => r.method === "linear" && num(r, "M") === 8192 && num(r, "N") === 2560 && /tile=128x128/.test(r.rest),
  );
  has(
    "a 640-channel conv at 64x64 on the 128x128 tile",
    (r) => r.method === "conv2d" && num(r, "K") === 640 * 9 && num(r, "N") === 4096 && /tile=128x128/.test(r.rest),
  );
  has("a tight tensor-core GEMM check", (r) => r.method === "linear" && /tc_exact/.test(r.label));
  has("a tight tensor-core conv check", (r) => r.method === "conv2d" && /tc_exact/.test(r.label));
  has("conv K >= 2880 at 16x16", (r) => r.method === "conv2d" && num(r, "K") >= 2880 && num(r, "N") === 256);
  has("conv K >= 2880 at 8x8", (r) => r.method === "conv2d" && num(r, "K") >= 2880 && num(r, "N") === 64);
  has("1x1 stride-2 conv", (r) => r.method === "conv2d" && num(r, "stride") === 2 && /1x1/.test(r.label));
  has("conv_transpose2d on the large tile", (r) => r.method === "conv_transpose2d" && /tile=128x128/.test(r.rest));
  for (const d of [80, 160]) {
    has(
      `temporal attention head_dim ${d}, 4096 pixels, 2-3 rows`,
      (r) =>
        r.method === "stream_temporal_attention" && num(r, "D") === d && num(r, "P") === 4096 &&
        [2, 3].includes(num(r, "R")),
    );
  }
  has(
    "warm-up temporal attention, 8 frames x 4096 pixels",
    (r) => r.method === "attention" && num(r, "B") === 4096 && num(r, "L") === 8,
  );
  has(
    "MiDaS 577-token attention at head_dim 64",
    (r) => r.method === "attention" && num(r, "L") === 577 && num(r, "D") === 64,
  );
  for (const m of ["random_normal", "image_from_u8", "image_to_host"]) has(m, (r) => r.method === m);
  has("fp16 stress with |x| up to 1e4", (r) => r.label.startsWith("stress/") && /1e4/.test(r.label));
  has("GroupNorm over a large mean", (r) => r.method === "group_norm" && /mean1e/.test(r.label));
  // Every label is unique (a filter names one case).
  assert.equal(new Set(rows.map((r) => r.label)).size, rows.length);
});
