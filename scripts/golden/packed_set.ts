/**
 * The compact form of the golden set that ships in the repository (`golden/`), and its unpacking.
 *
 * Most of the set is copied verbatim (`golden/files/<path>`: cases, configs, tokenizer, small files).
 * Each big model file is instead described as a list of segments whose concatenation is the file,
 * byte for byte: literal runs (headers, the torch zip directory and pickle, tensors no rule
 * reproduces, such as the sinusoidal `pos_encoder.pe` buffers) stored in `golden/literals.bin`, and
 * tensors regenerated from the golden README's Philox weight rule (seed + state-dict name). This
 * keeps safetensors headers and genuine `torch.save` zip files (`.ckpt`/`.pt`) exactly as recorded,
 * so the torch zip reader is tested on real files in a fresh clone too. `golden/pack.json` lists
 * every file of the set with its size and sha256; unpacking checks both.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { Buffer } from "node:buffer";
import { philoxWeight } from "../../ffi/philox.ts";

/** A run of bytes taken from `literals.bin` at `[offset, offset + length)`. */
export interface LiteralSegment {
  literal: [offset: number, length: number];
}

/** A tensor's raw little-endian bytes: the Philox weight rule of `name` with `seed`, rounded to `dtype`. */
export interface PhiloxSegment {
  seed: number;
  name: string;
  dtype: "F32" | "F16";
  shape: number[];
}

/** One part of a packed file. */
export type Segment = LiteralSegment | PhiloxSegment;

/** One file of the golden set: copied verbatim (no `segments`) or rebuilt from its segments. */
export interface PackedFile {
  bytes: number;
  sha256: string;
  segments?: Segment[];
}

/** `golden/pack.json`. */
export interface PackManifest {
  version: 1;
  /** Every file of the golden set, by path relative to the golden root. */
  files: Record<string, PackedFile>;
}

/** Names of the parts of the in-repository folder. */
export const PACK_JSON = "pack.json";
export const LITERALS = "literals.bin";
export const FILES = "files";

/** Lower-case hex sha256 of `bytes`. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The bytes of a Philox segment (float32 values, rounded to float16 like torch's `.half()` when asked). */
export function philoxSegmentBytes(seg: Omit<PhiloxSegment, "shape"> & { shape: readonly number[] }): Uint8Array {
  const f32 = philoxWeight(seg.name, seg.shape, seg.seed);
  return seg.dtype === "F32" ? new Uint8Array(f32.buffer) : new Uint8Array(new Float16Array(f32).buffer);
}

/** Rebuilds one packed file's bytes from its segments. */
export function rebuildFile(file: PackedFile, literals: Uint8Array): Uint8Array {
  if (!file.segments) throw new Error("rebuildFile: a copied file has no segments");
  const out = new Uint8Array(file.bytes);
  let at = 0;
  for (const seg of file.segments) {
    const part = "literal" in seg
      ? literals.subarray(seg.literal[0], seg.literal[0] + seg.literal[1])
      : philoxSegmentBytes(seg);
    if (at + part.byteLength > out.byteLength) throw new Error("rebuildFile: segments exceed the file size");
    out.set(part, at);
    at += part.byteLength;
  }
  if (at !== out.byteLength) throw new Error(`rebuildFile: segments give ${at} bytes, expected ${file.bytes}`);
  return out;
}

/**
 * Writes the whole golden set described by `manifest` into `dest` (which must not exist yet or be
 * empty): copies from `packDir/files`, rebuilds the packed files, and checks every file's size and
 * sha256 (throws naming the first file that differs).
 */
export async function unpackSet(packDir: string, manifest: PackManifest, dest: string): Promise<void> {
  const literals = await Deno.readFile(join(packDir, LITERALS));
  for (const [rel, file] of Object.entries(manifest.files)) {
    const bytes = file.segments ? rebuildFile(file, literals) : await Deno.readFile(join(packDir, FILES, rel));
    if (bytes.byteLength !== file.bytes || sha256(bytes) !== file.sha256) {
      throw new Error(
        `golden set: ${rel} does not match ${PACK_JSON} (${bytes.byteLength} bytes, expected ${file.bytes}; ` +
          `sha256 differs${file.segments ? ": the regenerated Philox tensors differ on this machine" : ""})`,
      );
    }
    await Deno.mkdir(dirname(join(dest, rel)), { recursive: true });
    await Deno.writeFile(join(dest, rel), bytes);
  }
}

/** A tensor of a model file, as the pack step sees it: its bytes and the Philox rule that makes them. */
export interface KnownTensor {
  data: Uint8Array;
  seg: PhiloxSegment;
}

/** Tensors smaller than this stay literal: short byte strings may also occur by chance elsewhere. */
const MIN_TENSOR_BYTES = 64;

/**
 * Describes `bytes` (a model file) as segments: every tensor of `tensors` is located in the file by
 * its bytes and replaced by its Philox rule; everything else is appended to `literals` (the caller's
 * growing literal store) and referenced. Identical tensors may swap places: their bytes are equal.
 */
export function describeFile(
  bytes: Uint8Array,
  tensors: KnownTensor[],
  literals: { parts: Uint8Array[]; size: number },
): { segments: Segment[]; philoxBytes: number } {
  const haystack = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const claimed: [number, number][] = [];
  const overlaps = (a: number, b: number) => claimed.some(([c, d]) => a < d && c < b);
  const hits: { at: number; seg: PhiloxSegment; len: number }[] = [];
  let cursor = 0;
  for (const t of tensors) {
    const len = t.data.byteLength;
    if (len < MIN_TENSOR_BYTES) continue;
    const needle = Buffer.from(t.data.buffer, t.data.byteOffset, len);
    // Files store tensors mostly in order: search forward from the last hit first.
    let at = haystack.indexOf(needle, cursor);
    if (at < 0 || overlaps(at, at + len)) at = haystack.indexOf(needle, 0);
    while (at >= 0 && overlaps(at, at + len)) at = haystack.indexOf(needle, at + 1);
    if (at < 0) continue;
    claimed.push([at, at + len]);
    hits.push({ at, seg: t.seg, len });
    cursor = at + len;
  }
  hits.sort((a, b) => a.at - b.at);
  const segments: Segment[] = [];
  const literal = (from: number, to: number) => {
    if (to <= from) return;
    segments.push({ literal: [literals.size, to - from] });
    literals.parts.push(bytes.slice(from, to));
    literals.size += to - from;
  };
  let pos = 0, philoxBytes = 0;
  for (const h of hits) {
    literal(pos, h.at);
    segments.push(h.seg);
    philoxBytes += h.len;
    pos = h.at + h.len;
  }
  literal(pos, bytes.byteLength);
  return { segments, philoxBytes };
}
