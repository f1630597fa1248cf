/**
 * Frame bytes <-> {@linkcode Frame}: the binary protocol's 16-byte header, JPEG decoding of inputs
 * and JPEG encoding of outputs (the worker does both, next to the engine, so gateways only move
 * bytes).
 *
 * @module
 */

// deno-lint-ignore no-import-prefix
import jpeg from "npm:jpeg-js@0.4.4";
import type { Frame } from "../mod.ts";
import { ClientError, type FrameHeader, HEADER_BYTES, KIND, PROTOCOL_VERSION } from "./protocol.ts";

/** Decodes a validated input frame (raw RGB/RGBA or JPEG) to pixels. */
export function decodeInput(header: FrameHeader, payload: Uint8Array, maxFrameSide: number): Frame {
  if (header.kind !== KIND.JPEG) {
    return { data: payload, width: header.width, height: header.height, channels: header.kind === KIND.RGBA ? 4 : 3 };
  }
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(payload, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: (maxFrameSide * maxFrameSide) / 1e6,
      maxMemoryUsageInMB: 256,
    });
  } catch (e) {
    throw new ClientError("BAD_FRAME", `Cannot decode the JPEG: ${e instanceof Error ? e.message : e}`);
  }
  if (img.width !== header.width || img.height !== header.height) {
    throw new ClientError(
      "BAD_FRAME",
      `JPEG is ${img.width}x${img.height}, header says ${header.width}x${header.height}`,
    );
  }
  return { data: img.data, width: img.width, height: img.height, channels: 3 };
}

/** Encodes RGB pixels as JPEG. */
export function encodeJpeg(out: Frame, quality: number): Uint8Array {
  const rgba = new Uint8Array(out.width * out.height * 4);
  for (let i = 0, j = 0; i < out.data.length; i += 3, j += 4) {
    rgba[j] = out.data[i]!;
    rgba[j + 1] = out.data[i + 1]!;
    rgba[j + 2] = out.data[i + 2]!;
    rgba[j + 3] = 255;
  }
  return new Uint8Array(jpeg.encode({ data: rgba, width: out.width, height: out.height }, quality).data);
}

/** Builds an output frame message: header (source seq, ack seq, engine ms) + payload. */
export function encodeOutput(
  kind: number,
  width: number,
  height: number,
  payload: Uint8Array,
  sourceSeq: number,
  ackSeq: number,
  ms: number,
): Uint8Array {
  const msg = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const view = new DataView(msg.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, PROTOCOL_VERSION);
  view.setUint16(2, width, true);
  view.setUint16(4, height, true);
  view.setUint16(6, Math.min(65535, Math.max(0, Math.round(ms))), true);
  view.setUint32(8, sourceSeq >>> 0, true);
  view.setUint32(12, ackSeq >>> 0, true);
  msg.set(payload, HEADER_BYTES);
  return msg;
}
