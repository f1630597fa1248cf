/**
 * Issue 12, checkpoint readers: one hand-made hostile file per finding (built here), each refused
 * with a CheckpointError naming the budget it exceeds, within a time and memory bound; and honest
 * files just inside the same limits still open.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CheckpointError,
  MAX_HEADER_BYTES,
  openCheckpoint,
  openSafetensors,
  openTorchCheckpoint,
  openZip,
  unpickle,
} from "../ffi/formats/mod.ts";
import { pickleBudget } from "../ffi/formats/pickle.ts";
import {
  codecsBombPickle,
  nameDagTorch,
  namedTorch,
  rawSafetensorsText,
  setBombPickle,
  shapeArraySafetensors,
  stridedTorch,
} from "./_fixtures/hostile_checkpoints.ts";
import { OP, PickleWriter, stateDictPickle, type TorchTensorSpec } from "./_fixtures/pickle_writer.ts";
import { buildTorchZip, buildZip } from "./_fixtures/zip_writer.ts";

const MiB = 1024 * 1024;

async function tmpFile(bytes: Uint8Array, ext: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ext });
  await Deno.writeFile(path, bytes);
  return path;
}

/**
 * Runs `fn`, which must throw a CheckpointError matching `re`, within `ms` milliseconds and growing
 * the heap by less than `heapMiB` (measured after the call: what the refused input left behind, plus
 * the peak V8 had not yet collected).
 */
async function refusedWithin(fn: () => unknown, re: RegExp, ms: number, heapMiB: number): Promise<void> {
  const before = Deno.memoryUsage().heapUsed;
  const t0 = performance.now();
  let error: unknown;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  const elapsed = performance.now() - t0;
  const grown = (Deno.memoryUsage().heapUsed - before) / MiB;
  assert.ok(error instanceof CheckpointError, `expected a CheckpointError, got ${error}`);
  assert.match((error as Error).message, re);
  assert.ok(elapsed < ms, `took ${elapsed.toFixed(0)} ms (bound ${ms})`);
  assert.ok(grown < heapMiB, `heap grew ${grown.toFixed(0)} MiB (bound ${heapMiB})`);
}

Deno.test("pickle: _codecs.encode repeated on a memoised string exceeds the bytes budget", async () => {
  // 100 reps of a 1 MB string: 100 MB produced from a ~1 MB pickle (unbounded before: 279 KB -> 2 GB).
  const bomb = codecsBombPickle(1_000_000, 100);
  await refusedWithin(() => unpickle(bomb, { label: "bomb" }), /more than \d+ (bytes of objects|operations)/, 2000, 64);
  // The same construct a few times stays inside the budget: protocol-2 bytes objects are legitimate.
  const fine = unpickle(codecsBombPickle(1_000_000, 3), { label: "ok" });
  assert.deepEqual(fine, []);
});

Deno.test("pickle: builtins.set repeated over a memoised list exceeds the operations budget", async () => {
  // 50,000-element list fed 2,000 times: 100 M insertions from a ~150 KB pickle.
  const bomb = setBombPickle(50_000, 2_000);
  await refusedWithin(() => unpickle(bomb, { label: "bomb" }), /more than \d+ operations/, 2000, 64);
  assert.deepEqual(unpickle(setBombPickle(50_000, 2), { label: "ok" }), []);
});

Deno.test("pickle: explicit budgets are honoured and the memo is bounded by the pickle", () => {
  const w = new PickleWriter().proto(2).op(OP.NONE);
  for (let i = 0; i < 100; i++) w.op(0x94); // MEMOIZE
  const bytes = w.op(OP.POP).op(OP.NONE).stop().bytesOut();
  assert.equal(unpickle(bytes, { label: "x" }), null);
  assert.throws(() => unpickle(bytes, { label: "x", maxOperations: 50 }), /more than 50 operations/);
  assert.throws(
    () => unpickle(codecsBombPickle(1000, 1), { label: "x", maxBytesProduced: 2500 }),
    /more than 2500 bytes of objects/,
  );
});

/** An SD1.5 LDM-like state dict: model + EMA, ~2,200 tensors with the real checkpoint's long names. */
function sd15LikeTensors(): TorchTensorSpec[] {
  const out: TorchTensorSpec[] = [];
  for (const root of ["model.diffusion_model", "model_ema.diffusion_model"]) {
    for (let block = 0; block < 12; block++) {
      for (let layer = 0; layer < 90; layer++) {
        const i = out.length;
        out.push({
          name: `${root}.input_blocks.${block}.1.transformer_blocks.0.attn${layer % 2 + 1}.to_q_${layer}.weight`,
          key: String(i),
          storageType: "HalfStorage",
          storageNumel: 4,
          offset: 0,
          shape: [2, 2],
          stride: [2, 1],
        });
      }
    }
  }
  return out;
}

Deno.test("budgets admit a real-sized state dict with a wide margin", async () => {
  const tensors = sd15LikeTensors();
  const pkl = stateDictPickle(tensors, true);
  // A tenth of each default budget is still enough: real files are nowhere near the limits.
  const { operations, bytesProduced } = pickleBudget(pkl.length);
  const root = unpickle(pkl, {
    label: "sd15",
    persistentLoad: () => ({}),
    reducers: { "torch._utils._rebuild_tensor_v2": () => ({}) },
    maxOperations: Math.floor(operations / 10),
    maxBytesProduced: Math.floor(bytesProduced / 10),
  });
  assert.ok(root instanceof Map);
  const storages = Object.fromEntries(tensors.map((t) => [t.key, new Uint8Array(8)]));
  using f = await openTorchCheckpoint(await tmpFile(await buildTorchZip("archive", pkl, storages), ".ckpt"));
  assert.equal(f.names.length, tensors.length);
});

Deno.test("torch: memoised long keys in a shared dict DAG exceed the name budget", async () => {
  // 1,024 names of ~100 KB each (100 MB) from a ~20 KB file.
  const path = await tmpFile(await nameDagTorch(10_000, 10), ".pt");
  await refusedWithin(() => openTorchCheckpoint(path), /state-dict names longer than \d+ characters/, 2000, 32);
  // A small DAG with short keys is a legitimate (if odd) nesting and opens.
  using ok = await openTorchCheckpoint(await tmpFile(await nameDagTorch(3, 3), ".pt"));
  assert.equal(ok.names.length, 8);
  assert.equal(ok.names[0], "aaa.aaa.aaa.w");
});

Deno.test("torch: stride 0, overlapping and out-of-storage views are refused at open", async () => {
  // A 1 GiB float tensor declared over a 4-element storage by stride 0 (was materialised by read()).
  const zero = await tmpFile(await stridedTorch([2 ** 28], [0]), ".pt");
  await refusedWithin(() => openCheckpoint(zero), /address one storage element twice/, 1000, 16);
  // Overlapping: [2, 3] with strides [1, 1] stays within 4 elements but reuses them.
  const overlap = await tmpFile(await stridedTorch([2, 3], [1, 1]), ".pt");
  await refusedWithin(() => openCheckpoint(overlap), /address one storage element twice/, 1000, 16);
  const past = await tmpFile(await stridedTorch([5], [1]), ".pt");
  await refusedWithin(() => openCheckpoint(past), /runs past the end of storage/, 1000, 16);
  // Legitimate views: transposed, size-1 dims with stride 0 (torch's expand, as CLIP's position_ids), strided.
  for (
    const [shape, stride, want] of [
      [[2, 2], [1, 2], [1, 3, 2, 4]],
      [[1, 4], [0, 1], [1, 2, 3, 4]],
      [[2], [2], [1, 3]],
    ] as const
  ) {
    using f = await openCheckpoint(await tmpFile(await stridedTorch([...shape], [...stride]), ".pt"));
    assert.deepEqual([...new Float32Array((await f.read("w")).data.slice().buffer)], want);
  }
});

Deno.test("torch: many tensors viewing the same storage exceed the view budget", async () => {
  // 100 names, each viewing all of one 1 MiB storage: reading them all would copy 100 MiB from a 1 MiB file.
  const names = Array.from({ length: 100 }, (_, i) => `t${i}`);
  const path = await tmpFile(await namedTorch(names, 256 * 1024), ".pt");
  await refusedWithin(() => openTorchCheckpoint(path), /viewed many times over/, 2000, 16);
  // Tied weights (a few views of one storage) are fine.
  using f = await openTorchCheckpoint(await tmpFile(await namedTorch(names.slice(0, 4), 256 * 1024), ".pt"));
  assert.equal(f.names.length, 4);
});

Deno.test("zip: entries whose bytes overlap (one nested in another) are refused", async () => {
  const zip = await buildZip([
    { name: "x", data: new Uint8Array(100) },
    { name: "y", data: new Uint8Array(100) },
  ]);
  // Grow x's sizes in the central directory so that its data runs over y's local header and data.
  const v = new DataView(zip.buffer);
  const central = zip.findIndex((_, i) => i + 4 <= zip.length && v.getUint32(i, true) === 0x02014b50);
  v.setUint32(central + 20, 250, true);
  v.setUint32(central + 24, 250, true);
  const path = await tmpFile(zip, ".zip");
  await refusedWithin(() => openZip(path), /archive entries "x" and "y" overlap/, 1000, 16);
  // The unpatched archive opens.
  using ok = await openZip(
    await tmpFile(
      await buildZip([
        { name: "x", data: new Uint8Array(100) },
        { name: "y", data: new Uint8Array(100) },
      ]),
      ".zip",
    ),
  );
  assert.equal(ok.entries.size, 2);
});

Deno.test("safetensors: a header of one huge shape array is refused before JSON.parse", async () => {
  // ~10 MB header of one shape array (within MAX_HEADER_BYTES): was 1.3-3.7 s and 1.2 GB at 50 MB.
  const path = await tmpFile(shapeArraySafetensors(5_000_000), ".safetensors");
  await refusedWithin(() => openSafetensors(path), /array of more than 64 values/, 1000, 48);
  const deep = await tmpFile(rawSafetensorsText(`{"w":{"shape":[[[1]]]}}`), ".safetensors");
  await refusedWithin(() => openSafetensors(deep), /nested more than 3 levels/, 1000, 16);
  // A header over the limit is refused from its length field alone.
  const big = new Uint8Array(16);
  new DataView(big.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 8), true);
  big.set(new TextEncoder().encode("{}      "), 8);
  await refusedWithin(
    async () => openSafetensors(await tmpFile(big, ".safetensors")),
    /header of \d+ bytes \(limit/,
    1000,
    16,
  );
  // Rank 64 (the limit) and brackets or commas inside names and metadata strings are fine.
  const ok = rawSafetensorsText(
    `{"w[,]{":{"dtype":"F32","shape":[${new Array(64).fill(1)}],"data_offsets":[0,4]},` +
      `"__metadata__":{"a,[":"x\\",[[[[,"}}`,
    new Uint8Array(4),
  );
  using f = await openSafetensors(await tmpFile(ok, ".safetensors"));
  assert.deepEqual(f.names, ["w[,]{"]);
  assert.equal(f.metadata["a,["], 'x",[[[[,');
});

Deno.test("tensor names with NUL or unpaired surrogates are CheckpointErrors in both readers", async () => {
  for (const name of ["a\0b", "w\ud800", "w\udc00"]) {
    const st = rawSafetensorsText(
      `{${JSON.stringify(name)}:{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`,
      new Uint8Array(4),
    );
    await refusedWithin(
      async () => openCheckpoint(await tmpFile(st, ".safetensors")),
      /NUL or an unpaired surrogate/,
      1000,
      16,
    );
  }
  const pt = await tmpFile(await namedTorch(["a\0b"]), ".pt");
  await refusedWithin(() => openCheckpoint(pt), /NUL or an unpaired surrogate/, 1000, 16);
});

Deno.test({
  name: "FIFOs and directories are refused before they are opened",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const fifo = join(dir, "ckpt.safetensors");
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mk.success, "mkfifo");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 2000));
    try {
      const outcome = await Promise.race([openCheckpoint(fifo).then(() => "opened", (e) => e), timeout]);
      if (outcome === "timeout") {
        // Unblock the pending open so the test can end, then fail.
        (await Deno.open(fifo, { write: true })).close();
        assert.fail("openCheckpoint blocked on a FIFO");
      }
      assert.ok(outcome instanceof CheckpointError, `got ${outcome}`);
      assert.match((outcome as Error).message, /not a regular file/);
      await assert.rejects(() => openCheckpoint(dir), CheckpointError);
    } finally {
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
