// The CUDA norm op test (cuda/build/test_cuda_norm, built by `deno task build:native`): without a
// GPU it must exit 77 saying why (never 0); its harness and small cases run with the CPU standing
// in for CUDA (L2D_TEST_SELF=1 --small); and its case table (`--list`, no GPU needed) must hold
// every GroupNorm and LayerNorm shape the networks run (UNet at a 64x64 latent with T = 2 and 3,
// MiDaS at 384x384, CLIP at 77 tokens), each GroupNorm with and without SiLU, plus fp16 stress.
import assert from "node:assert/strict";
import { runNativeBin } from "./_fixtures/native_bin.ts";

const run = (args: string[] = [], env: Record<string, string> = {}) => runNativeBin("test_cuda_norm", args, env);

Deno.test("test_cuda_norm passes on a GPU, and without one exits 77 saying why", async () => {
  const { code, text } = await run([], { L2D_NORM: "fast" });
  assert.match(text, /^test_cuda_norm: L2D_NORM=fast$/m);
  const noGpu = text.match(/^test_cuda_norm: no GPU: (.+?)\s+FAIL$/m);
  if (noGpu) {
    assert.equal(code, 77, text);
    assert.match(noGpu[1], /CUDA|driver|device/, text);
  } else {
    assert.equal(code, 0, text);
    assert.match(text, /env\/L2D_NORM=fastest\s+status 1\n/);
    assert.match(text, /all ok/);
  }
});

Deno.test("test_cuda_norm harness and small cases run with the CPU standing in for CUDA", async () => {
  const { code, text } = await run(["--small"], { L2D_TEST_SELF: "1" });
  assert.equal(code, 0, text);
  assert.match(text, /test_cuda_norm: \d+ cases in [\d.]+ s: all ok/);
  assert.match(text, /stress\/gn_mean1e4_small\s+cuda-fp16\s+y\s+max_abs/);
});

type Row = { label: string; method: string; dims: number[]; groups: number };

async function listed(): Promise<Row[]> {
  const { code, text } = await run(["--list"]);
  assert.equal(code, 0, text);
  return text.trim().split("\n").map((line) => {
    const [label, method, _size, shape, ...rest] = line.split(/\s+/);
    const groups = Number(rest.join(" ").match(/\bG=(\d+)/)?.[1] ?? NaN);
    return { label, method, dims: JSON.parse(shape) as number[], groups };
  });
}

const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

Deno.test("test_cuda_norm covers every norm shape of the networks (--list, no GPU needed)", async () => {
  const rows = await listed();
  const has = (what: string, pred: (r: Row) => boolean) =>
    assert.ok(rows.some(pred), `no case for ${what} in:\n${rows.map((r) => r.label).join("\n")}`);
  const gn = (dims: number[], silu: boolean) =>
    has(
      `group_norm ${JSON.stringify(dims)}${silu ? " + SiLU" : ""}`,
      (r) => r.method === "group_norm" && r.groups === 32 && same(r.dims, dims) && r.label.endsWith("_silu") === silu,
    );
  // SD1.5 resnets (norm1 on the skip-concatenated inputs, norm2 on the outputs) and the transformer /
  // motion-module norms, at the 64 / 32 / 16 / 8 levels of a 64x64 latent.
  const unet: [number, number][] = [
    [320, 64],
    [640, 64],
    [960, 64],
    [320, 32],
    [640, 32],
    [960, 32],
    [1280, 32],
    [1920, 32],
    [640, 16],
    [1280, 16],
    [1920, 16],
    [2560, 16],
    [1280, 8],
    [2560, 8],
  ];
  for (const t of [2, 3]) {
    for (const [c, h] of unet) for (const silu of [true, false]) gn([t, c, h, h], silu);
    for (const [c, h] of [[320, 64], [640, 32], [1280, 16], [1280, 8]]) {
      has(
        `group_norm_tokens [${t},${c},${h},${h}]`,
        (r) => r.method === "group_norm_tokens" && same(r.dims, [t, c, h, h]),
      );
    }
    for (const [c, p] of [[320, 4096], [640, 1024], [1280, 256], [1280, 64]]) {
      has(`layer_norm [${t},${p},${c}]`, (r) => r.method === "layer_norm" && same(r.dims, [t, p, c]));
    }
  }
  // MiDaS DPT-Hybrid ResNetV2 at 384x384.
  const midas: [number, number][] = [
    [64, 192],
    [64, 96],
    [256, 96],
    [128, 96],
    [128, 48],
    [512, 48],
    [256, 48],
    [256, 24],
    [1024, 24],
  ];
  for (const [c, h] of midas) for (const silu of [true, false]) gn([1, c, h, h], silu);
  for (const c of [768, 1024]) {
    has(`MiDaS ViT layer_norm C=${c}`, (r) => r.method === "layer_norm" && same(r.dims, [1, 577, c]));
  }
  has("CLIP layer_norm", (r) => r.method === "layer_norm" && same(r.dims, [1, 77, 768]));
  // fp16 range stress on both norms, and the fast kernels' fallbacks.
  has("GroupNorm over a mean of 1e4", (r) => r.method === "group_norm" && /stress\/.*mean1e4/.test(r.label));
  has("GroupNorm with |x| up to 1e4", (r) => r.method === "group_norm" && /stress\/.*abs1e4/.test(r.label));
  has("LayerNorm over a large mean", (r) => r.method === "layer_norm" && /stress\/.*mean1e3/.test(r.label));
  has("LayerNorm with |x| up to 1e4", (r) => r.method === "layer_norm" && /stress\/.*abs1e4/.test(r.label));
  has(
    "GroupNorm with S not a multiple of 4",
    (r) => r.method === "group_norm" && r.dims.slice(2).reduce((a, b) => a * b) % 4 !== 0,
  );
  has("LayerNorm too wide for registers", (r) => r.method === "layer_norm" && r.dims[r.dims.length - 1] > 4096);
  assert.equal(new Set(rows.map((r) => r.label)).size, rows.length, "labels are unique");
});
