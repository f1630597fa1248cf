/**
 * Portable Philox4x32-10 random numbers, exactly as specified in the golden README
 * ("Portable random numbers"). Every weight, test input and diffusion noise of the golden set
 * comes from these functions, so they must reproduce the reference bit for bit.
 *
 * @example
 * ```ts
 * import { philoxNormal, philoxWeight } from "./philox.ts";
 * const noise = philoxNormal([1, 4, 8, 8], 3001, 1, 8);
 * const w = philoxWeight("conv_in.weight", [32, 4, 3, 3], 1001);
 * ```
 *
 * @module
 */

const M0 = 0xD2511F53;
const M1 = 0xCD9E8D57;
const W0 = 0x9E3779B9;
const W1 = 0xBB67AE85;
/** Third counter word of weight draws: ASCII "WEIG". */
const WEIGHT_TAG = 0x57454947;
const TWO_POW_32 = 4294967296;

/** High 32 bits of the exact 64-bit product `a * b` (a, b uint32). */
function mulhi32(a: number, b: number): number {
  // Split into 16-bit halves so every partial product stays far below 2^53 and is exact in float64.
  const aH = a >>> 16, aL = a & 0xffff, bH = b >>> 16, bL = b & 0xffff;
  const cross = aH * bL + aL * bH + ((aL * bL) >>> 16);
  return (aH * bH + Math.floor(cross / 65536)) >>> 0;
}

function checkU32(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v >= TWO_POW_32) {
    throw new RangeError(`Philox ${what} must be an integer in [0, 2^32), got ${v}`);
  }
  return v;
}

/**
 * One Philox4x32-10 block: 10 rounds on `counter` with `key` (all words uint32).
 * Matches the Random123 known-answer tests.
 */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  const out = new Uint32Array(4);
  philoxBlock(
    counter[0] >>> 0,
    counter[1] >>> 0,
    counter[2] >>> 0,
    counter[3] >>> 0,
    key[0] >>> 0,
    key[1] >>> 0,
    out,
    0,
  );
  return [out[0]!, out[1]!, out[2]!, out[3]!];
}

/** Writes the 4 output words of one block into `out[at..at+3]` (the hot loop of every draw). */
function philoxBlock(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
  at: number,
): void {
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[at] = c0;
  out[at + 1] = c1;
  out[at + 2] = c2;
  out[at + 3] = c3;
}

/**
 * The word stream of a draw: element `e` takes word `e mod 4` of block `floor(e/4)`,
 * computed with counter `(floor(e/4), c1, c2, c3)` and key `(seed, 0)`.
 */
export function philoxWords(n: number, seed: number, c1: number, c2: number, c3: number): Uint32Array {
  checkCount(n);
  checkU32("seed", seed);
  checkU32("counter word 1", c1);
  checkU32("counter word 2", c2);
  checkU32("counter word 3", c3);
  const blocks = Math.ceil(n / 4);
  if (blocks > TWO_POW_32) throw new RangeError(`Philox draw of ${n} words exceeds the 2^32-block counter`);
  // Round up to whole blocks so the hot loop never branches on a partial block.
  const words = new Uint32Array(blocks * 4);
  for (let b = 0; b < blocks; b++) philoxBlock(b, c1, c2, c3, seed, 0, words, b * 4);
  return blocks * 4 === n ? words : words.subarray(0, n);
}

function checkCount(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Philox element count must be a non-negative integer, got ${n}`);
  }
}

/** Maps a uint32 word to the open interval (0, 1) as in the README: `(x + 0.5) / 2^32`. */
function toUniform(x: number): number {
  return (x + 0.5) / TWO_POW_32;
}

/** `n` float64 uniforms in (0,1) from the word stream with counter `(b, c1, c2, c3)`, key `(seed, 0)`. */
export function philoxUniform(n: number, seed: number, c1: number, c2: number, c3: number): Float64Array {
  const words = philoxWords(n, seed, c1, c2, c3);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = toUniform(words[i]!);
  return out;
}

function shapeNumel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`Invalid dimension ${d} in shape [${shape}]`);
    n *= d;
  }
  checkCount(n);
  return n;
}

/**
 * Standard normal draw `normal(shape, seed, stream, draw)`: key `(seed, 0)`, counter `(b, 0, stream, draw)`,
 * Box-Muller on each block's uniforms in float64, rounded to float32 (C-contiguous order).
 */
export function philoxNormal(
  shape: readonly number[],
  seed: number,
  stream: number,
  draw: number,
): Float32Array {
  const n = shapeNumel(shape);
  const words = philoxWords(Math.ceil(n / 4) * 4, seed, 0, stream, draw);
  const out = new Float32Array(n);
  for (let e = 0; e < n; e += 4) {
    const u0 = toUniform(words[e]!), u1 = toUniform(words[e + 1]!);
    const u2 = toUniform(words[e + 2]!), u3 = toUniform(words[e + 3]!);
    const r0 = Math.sqrt(-2 * Math.log(u0)), r1 = Math.sqrt(-2 * Math.log(u2));
    const a0 = 2 * Math.PI * u1, a1 = 2 * Math.PI * u3;
    // Elements past the end of a partial last block are simply not stored.
    out[e] = r0 * Math.cos(a0);
    if (e + 1 < n) out[e + 1] = r0 * Math.sin(a0);
    if (e + 2 < n) out[e + 2] = r1 * Math.cos(a1);
    if (e + 3 < n) out[e + 3] = r1 * Math.sin(a1);
  }
  return out;
}

/** FNV-1a 32-bit hash of the UTF-8 bytes of `str` (the per-tensor stream id of weight draws). */
export function fnv1a32(str: string): number {
  let h = 0x811C9DC5;
  for (const byte of new TextEncoder().encode(str)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h >>> 0;
}

/**
 * Whether a 1-D tensor named `name` is a normalisation scale: it ends in `.weight` and some
 * dot-separated component before that contains `norm`.
 */
export function isNormWeight(name: string): boolean {
  if (!name.endsWith(".weight")) return false;
  return name.split(".").slice(0, -1).some((c) => c.includes("norm"));
}

/**
 * Philox weight of parameter `name` with `shape` (README "Weights" rule), float32 in C order:
 * `ndim >= 2`: `(2u-1)/sqrt(fan_in)` with `fan_in = prod(shape[1:])`; 1-D norm weights: `1 + 0.1(2u-1)`;
 * every other tensor: `0.05(2u-1)`. 0-d tensors follow the "other" rule, as the README's rule
 * names only `ndim >= 2` and `ndim == 1` norm weights. Counter `(b, 0, fnv1a32(name), 0x57454947)`.
 */
export function philoxWeight(name: string, shape: readonly number[], seed: number): Float32Array {
  const n = shapeNumel(shape);
  const words = philoxWords(n, seed, 0, fnv1a32(name), WEIGHT_TAG);
  const out = new Float32Array(n);
  if (shape.length >= 2) {
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    // Division (not multiplication by 1/sqrt) keeps the float64 value identical to the reference formula.
    const root = Math.sqrt(fanIn);
    for (let i = 0; i < n; i++) out[i] = (2 * toUniform(words[i]!) - 1) / root;
  } else if (shape.length === 1 && isNormWeight(name)) {
    for (let i = 0; i < n; i++) out[i] = 1 + 0.1 * (2 * toUniform(words[i]!) - 1);
  } else {
    for (let i = 0; i < n; i++) out[i] = 0.05 * (2 * toUniform(words[i]!) - 1);
  }
  return out;
}
