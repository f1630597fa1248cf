/**
 * Reads a JPEG's declared size from its SOF marker without decoding it, and bounds what decoding it
 * would cost, so that a hostile JPEG (a "bomb": a few hundred KB declaring 4096x4096 or more) is
 * refused before any decoder allocates for it.
 *
 * @module
 */

/** What a JPEG's frame header (SOF) declares. */
export interface JpegHeader {
  width: number;
  height: number;
  /** Colour components (1 grey, 3 YCbCr, 4 CMYK). */
  components: number;
  progressive: boolean;
  /** Bytes jpeg-js 0.4 allocates to decode it (its own accounting, plus the RGB output we ask for). */
  decodeBytes: number;
}

/** Start-of-frame markers (baseline, extended, progressive, lossless and the arithmetic variants). */
const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
/** Markers without a length field. */
const STANDALONE = new Set([0x01, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7]);

/** Thrown for bytes that are not a JPEG with a readable frame header. */
export class JpegHeaderError extends Error {
  override name = "JpegHeaderError";
}

/**
 * Walks the marker segments up to the first SOF and returns what it declares. Time is linear in
 * the bytes before the SOF; nothing is allocated in proportion to the declared size.
 */
export function readJpegHeader(bytes: Uint8Array): JpegHeader {
  if (bytes.byteLength < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    throw new JpegHeaderError("not a JPEG (no SOI marker)");
  }
  let i = 2;
  while (i + 4 <= bytes.byteLength) {
    if (bytes[i] !== 0xff) throw new JpegHeaderError(`corrupt marker at byte ${i}`);
    const marker = bytes[i + 1]!;
    if (marker === 0xff) { // fill byte
      i++;
      continue;
    }
    if (STANDALONE.has(marker)) {
      i += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break; // EOI / SOS before any frame header
    const length = (bytes[i + 2]! << 8) | bytes[i + 3]!;
    if (length < 2 || i + 2 + length > bytes.byteLength) throw new JpegHeaderError(`truncated segment at byte ${i}`);
    if (SOF.has(marker)) return parseSof(bytes.subarray(i + 4, i + 2 + length), marker);
    i += 2 + length;
  }
  throw new JpegHeaderError("no frame header (SOF) before the image data");
}

function parseSof(seg: Uint8Array, marker: number): JpegHeader {
  if (seg.byteLength < 6) throw new JpegHeaderError("truncated frame header");
  const height = (seg[1]! << 8) | seg[2]!, width = (seg[3]! << 8) | seg[4]!, components = seg[5]!;
  if (width === 0 || height === 0) throw new JpegHeaderError(`declared size ${width}x${height} is empty`);
  if (components < 1 || components > 4 || seg.byteLength < 6 + 3 * components) {
    throw new JpegHeaderError(`unsupported component count ${components}`);
  }
  const factors: { h: number; v: number }[] = [];
  for (let c = 0; c < components; c++) {
    const hv = seg[6 + 3 * c + 1]!;
    const h = hv >> 4, v = hv & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) throw new JpegHeaderError(`bad sampling factors ${h}x${v}`);
    factors.push({ h, v });
  }
  return { width, height, components, progressive: marker === 0xc2, decodeBytes: decodeBytes(width, height, factors) };
}

/**
 * jpeg-js 0.4's allocations for a decode to RGB: an Int32Array(64) per 8x8 block of every
 * component (MCU-padded, 256 bytes each, counted without the per-array overhead V8 adds), the
 * component planes, the colour-converted data and the output.
 */
function decodeBytes(width: number, height: number, factors: { h: number; v: number }[]): number {
  const maxH = Math.max(...factors.map((f) => f.h)), maxV = Math.max(...factors.map((f) => f.v));
  const mcusPerLine = Math.ceil(width / 8 / maxH), mcusPerColumn = Math.ceil(height / 8 / maxV);
  let total = 0;
  for (const f of factors) {
    const blocks = mcusPerLine * f.h * mcusPerColumn * f.v;
    total += blocks * 256; // coefficient blocks
    const blocksPerLine = Math.ceil(Math.ceil(width / 8) * f.h / maxH);
    const blocksPerColumn = Math.ceil(Math.ceil(height / 8) * f.v / maxV);
    total += blocksPerLine * 8 * blocksPerColumn * 8; // component plane
  }
  total += width * height * factors.length; // getData
  total += width * height * 3; // RGB output
  return total;
}
