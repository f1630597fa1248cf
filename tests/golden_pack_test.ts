/**
 * The golden set shipped in the repository (golden/, scripts/golden/packed_set.ts + root.ts): packed
 * files are rebuilt byte for byte, corruption is caught, concurrent first uses agree, and the unpacked
 * set matches the sha256 list that the ORIGINAL set carries (models/MANIFEST.json), with the `.ckpt`
 * and `.pt` files as genuine torch zip files.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { detectFormat, encodeSafetensors, openCheckpoint } from "../ffi/formats/mod.ts";
import {
  describeFile,
  FILES,
  LITERALS,
  PACK_JSON,
  type PackManifest,
  philoxSegmentBytes,
  rebuildFile,
  sha256,
  unpackSet,
} from "../scripts/golden/packed_set.ts";
import { REPO_GOLDEN, unpackRepoGolden } from "../scripts/golden/root.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

const REPO_MANIFEST: PackManifest = JSON.parse(await Deno.readTextFile(join(REPO_GOLDEN, PACK_JSON)));

Deno.test("golden pack: a file of Philox and other tensors is described and rebuilt byte for byte", () => {
  const a = { seed: 7, name: "a.weight", dtype: "F32" as const, shape: [4, 5] };
  const b = { seed: 9, name: "b.norm.weight", dtype: "F16" as const, shape: [40] };
  const other = new Uint8Array(96).map((_, i) => (i * 37) & 255); // no rule makes these
  const file = encodeSafetensors({
    a: { dtype: "F32", shape: a.shape, data: philoxSegmentBytes(a) },
    b: { dtype: "F16", shape: b.shape, data: philoxSegmentBytes(b) },
    // The same bytes twice: either copy may be matched, the rebuilt file is the same.
    b2: { dtype: "F16", shape: b.shape, data: philoxSegmentBytes(b) },
    c: { dtype: "U8", shape: [96], data: other },
  }, { format: "pt" });
  const literals = { parts: [] as Uint8Array[], size: 0 };
  const known = [a, b, b].map((seg) => ({ data: philoxSegmentBytes(seg), seg }));
  const { segments, philoxBytes } = describeFile(file, known, literals);
  assert.equal(philoxBytes, 80 + 80 + 80, "both copies of b and a are regenerated");
  assert.equal(literals.size, file.byteLength - philoxBytes, "everything else is literal");
  assert.equal(segments.filter((s) => "seed" in s).length, 3);
  const blob = new Uint8Array(literals.size);
  let at = 0;
  for (const p of literals.parts) blob.set(p, (at += p.byteLength) - p.byteLength);
  const rebuilt = rebuildFile({ bytes: file.byteLength, sha256: sha256(file), segments }, blob);
  assert.deepEqual(rebuilt, file);
});

Deno.test("golden pack: tensors under 64 bytes stay literal; a wrong size is an error", () => {
  const tiny = { seed: 1, name: "t.bias", dtype: "F32" as const, shape: [8] }; // 32 bytes
  const file = encodeSafetensors({ t: { dtype: "F32", shape: [8], data: philoxSegmentBytes(tiny) } });
  const literals = { parts: [] as Uint8Array[], size: 0 };
  const { segments, philoxBytes } = describeFile(file, [{ data: philoxSegmentBytes(tiny), seg: tiny }], literals);
  assert.equal(philoxBytes, 0);
  assert.deepEqual(segments, [{ literal: [0, file.byteLength] }]);
  assert.throws(
    () => rebuildFile({ bytes: file.byteLength + 1, sha256: "", segments }, literals.parts[0]!),
    /expected/,
  );
});

Deno.test("golden pack: a corrupted literal is caught by the sha256 check, naming the file", async () => {
  const rel = Object.keys(REPO_MANIFEST.files).find((r) => r.endsWith(".ckpt"))!;
  const packDir = await Deno.makeTempDir({ prefix: "l2d_pack_test_" });
  try {
    const literals = await Deno.readFile(join(REPO_GOLDEN, LITERALS));
    const seg = REPO_MANIFEST.files[rel]!.segments!.find((s) => "literal" in s)!;
    if ("literal" in seg) literals[seg.literal[0]] ^= 1;
    await Deno.writeFile(join(packDir, LITERALS), literals);
    await Deno.mkdir(join(packDir, FILES));
    const only: PackManifest = { version: 1, files: { [rel]: REPO_MANIFEST.files[rel]! } };
    await assert.rejects(unpackSet(packDir, only, join(packDir, "out")), new RegExp(`${rel}.*sha256 differs`));
  } finally {
    await Deno.remove(packDir, { recursive: true });
  }
});

Deno.test("golden pack: concurrent first uses unpack once into the same complete folder", async () => {
  const cache = await Deno.makeTempDir({ prefix: "l2d_pack_cache_" });
  const saved = Deno.env.get("LIVE2DIFF_CACHE_DIR");
  Deno.env.set("LIVE2DIFF_CACHE_DIR", cache);
  try {
    const [x, y] = await Promise.all([unpackRepoGolden(), unpackRepoGolden()]);
    assert.equal(x, y);
    const left = [...Deno.readDirSync(cache)].map((e) => e.name);
    assert.deepEqual(left, [x.split("/").pop()], "no temporary folder is left behind");
    for (const [rel, f] of Object.entries(REPO_MANIFEST.files)) {
      assert.equal((await Deno.stat(join(x, rel))).size, f.bytes, rel);
    }
    assert.equal(await unpackRepoGolden(), x, "a second use finds the unpacked set");
  } finally {
    if (saved === undefined) Deno.env.delete("LIVE2DIFF_CACHE_DIR");
    else Deno.env.set("LIVE2DIFF_CACHE_DIR", saved);
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("golden set: every model file matches the original set's MANIFEST.json; .ckpt/.pt are torch zips", async () => {
  const manifest: Record<string, { bytes: number; sha256: string }> = JSON.parse(
    await Deno.readTextFile(goldenPath("models/MANIFEST.json")),
  );
  assert.ok(Object.keys(manifest).length >= 20);
  for (const [rel, want] of Object.entries(manifest)) {
    const bytes = await Deno.readFile(goldenPath(rel));
    assert.equal(bytes.byteLength, want.bytes, rel);
    assert.equal(sha256(bytes), want.sha256, rel);
    if (/\.(ckpt|pt)$/.test(rel)) {
      assert.equal(detectFormat(bytes.subarray(0, 16)), "torch", `${rel} is a torch.save zip`);
      using ckpt = await openCheckpoint(goldenPath(rel));
      assert.ok(ckpt.names.length > 100, `${rel} opens with the torch zip reader`);
    }
  }
});
