/**
 * Checks ffi/philox.ts against every vector of the golden philox_test_vectors.json.
 * The golden root can be overridden with the env var L2D_GOLDEN_DIR.
 */
import assert from "node:assert/strict";
import { goldenPath } from "./_fixtures/golden_root.ts";
import {
  fnv1a32,
  isNormWeight,
  philox4x32,
  philoxNormal,
  philoxUniform,
  philoxWeight,
  philoxWords,
} from "../ffi/philox.ts";

type Vectors = Record<string, unknown>;
const vectors: Vectors = JSON.parse(await Deno.readTextFile(goldenPath("philox_test_vectors.json")));

/** Finds the single vector group whose key starts with `prefix` (keys embed their parameters). */
function group<T>(prefix: string): [string, T] {
  const keys = Object.keys(vectors).filter((k) => k.startsWith(prefix));
  assert.equal(keys.length, 1, `expected one vector group starting with "${prefix}", got ${keys}`);
  return [keys[0]!, vectors[keys[0]!] as T];
}

const hex = (s: string) => parseInt(s, 16);

/** Distance in float32 ulps (same sign assumed, which holds for these vectors within slack). */
function ulps(a: number, b: number): number {
  const buf = new Float32Array([a, b]);
  const bits = new Int32Array(buf.buffer);
  return Math.abs(bits[0]! - bits[1]!);
}

Deno.test("philox4x32-10 known-answer tests", () => {
  const kat = vectors["philox4x32_10_kat"] as { counter: string[]; key: string[]; out: string[] }[];
  assert.equal(kat.length, 3);
  for (const v of kat) {
    const c = v.counter.map(hex) as [number, number, number, number];
    const k = v.key.map(hex) as [number, number];
    assert.deepEqual(philox4x32(c, k), v.out.map(hex));
  }
});

Deno.test("philox word stream", () => {
  const [, blocks] = group<string[][]>("words:");
  const words = philoxWords(blocks.length * 4, 1, 0, 2, 3);
  assert.deepEqual(Array.from(words), blocks.flat().map(hex));
  // A partial last block yields the leading words of the same stream.
  assert.deepEqual(Array.from(philoxWords(5, 1, 0, 2, 3)), blocks.flat().map(hex).slice(0, 5));
});

Deno.test("philox uniform", () => {
  const [, expected] = group<number[]>("uniform(");
  assert.deepEqual(Array.from(philoxUniform(expected.length, 1, 0, 2, 3)), expected);
});

Deno.test("philox normal within 1 float32 ulp", () => {
  for (
    const [prefix, shape, seed, stream, draw] of [
      ["normal(shape [8],", [8], 1, 2, 3],
      ["normal(shape [1,4,8,8],", [1, 4, 8, 8], 3001, 1, 8],
    ] as const
  ) {
    const [key, expected] = group<number[]>(prefix);
    const got = philoxNormal(shape, seed, stream, draw);
    expected.forEach((v, i) => assert.ok(ulps(got[i]!, v) <= 1, `${key}[${i}]: ${got[i]} vs ${v}`));
  }
  // Odd sizes must be prefixes of the same stream (partial blocks).
  assert.deepEqual(philoxNormal([3], 1, 2, 3), philoxNormal([8], 1, 2, 3).subarray(0, 3));
  assert.equal(philoxNormal([0], 1, 2, 3).length, 0);
});

Deno.test("fnv1a32", () => {
  const table = vectors["fnv1a32"] as Record<string, string>;
  assert.ok(Object.keys(table).length >= 5);
  for (const [s, h] of Object.entries(table)) assert.equal(fnv1a32(s), hex(h), JSON.stringify(s));
});

Deno.test("philox weights", () => {
  const table = vectors["weights"] as Record<string, number[]>;
  assert.ok(Object.keys(table).length >= 3);
  for (const [key, expected] of Object.entries(table)) {
    // Keys look like "conv_in.weight, seed 1001, shape [32,4,3,3], first 5".
    const m = /^(.+), seed (\d+), shape \[([\d,]*)\]/.exec(key);
    assert.ok(m, `unparsed weight vector key ${key}`);
    const shape = m[3] === "" ? [] : m[3]!.split(",").map(Number);
    const got = philoxWeight(m[1]!, shape, Number(m[2]));
    assert.deepEqual(Array.from(got.subarray(0, expected.length)), expected, key);
  }
});

Deno.test("norm-weight rule and argument checks", () => {
  assert.ok(isNormWeight("a.norm1.weight"));
  assert.ok(isNormWeight("text_model.final_layer_norm.weight"));
  assert.ok(isNormWeight("x.norms.0.weight"));
  assert.ok(!isNormWeight("a.norm1.bias"));
  assert.ok(!isNormWeight("normal_proj.bias"));
  assert.ok(!isNormWeight("norm_weight"));
  assert.throws(() => philoxWords(4, -1, 0, 0, 0), RangeError);
  assert.throws(() => philoxWords(4, 2 ** 32, 0, 0, 0), RangeError);
  assert.throws(() => philoxNormal([2, -1], 1, 0, 0), RangeError);
});
