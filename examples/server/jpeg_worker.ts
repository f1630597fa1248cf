/**
 * JPEG decoding off the server's event loop: a Worker that decodes one JPEG per message with
 * jpeg-js (to RGB) under the memory and resolution limits it is given. Used by `jpeg_pool.ts`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import jpeg from "jpeg-js";

/** A decode request (the JPEG's bytes are transferred). */
export interface DecodeRequest {
  id: number;
  jpeg: Uint8Array;
  maxMemoryMB: number;
  maxMegapixels: number;
}

/** A decode result: RGB pixels (transferred) or the decoder's error; id 0 says the worker is ready. */
export type DecodeReply =
  | { id: number; ok: true; width: number; height: number; data: Uint8Array }
  | { id: number; ok: false; error: string };

/** The id of the message a worker posts once it has loaded (the pool's decode timer starts then). */
export const READY_ID = 0;

self.onmessage = (evt: MessageEvent<DecodeRequest>) => {
  const { id, jpeg: bytes, maxMemoryMB, maxMegapixels } = evt.data;
  let reply: DecodeReply;
  try {
    const img = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: maxMegapixels,
      maxMemoryUsageInMB: maxMemoryMB,
    });
    reply = { id, ok: true, width: img.width, height: img.height, data: img.data };
  } catch (e) {
    reply = { id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  self.postMessage(reply, reply.ok ? [reply.data.buffer as ArrayBuffer] : []);
};

self.postMessage({ id: READY_ID, ok: false, error: "" } satisfies DecodeReply);
