/**
 * The messages between gateways and workers on NATS, and the checks both sides apply to client
 * messages. Browser-facing messages are the single-machine server's (examples/server/app.ts).
 *
 * ## Subjects
 *
 * | subject | direction | body |
 * |---------|-----------|------|
 * | `l2d.hb` | worker → all | {@linkcode WorkerAdvert} JSON, every `heartbeatMs` and on `l2d.hb.req` |
 * | `l2d.hb.req` | gateway → workers | empty: "advertise now" (a starting gateway learns the workers at once) |
 * | `l2d.w.<worker>.open` | gateway → worker (request) | {@linkcode OpenRequest} → {@linkcode OpenReply} |
 * | `l2d.attach.<session>` | gateway → workers (request) | empty → {@linkcode OpenReply} of the worker holding it |
 * | `l2d.r.<route>.in` | gateway → worker | a client message, verbatim: JSON text or a binary frame |
 * | `l2d.r.<route>.out` | worker → gateway | a message for the client, verbatim, or a {@linkcode WorkerEvent} |
 *
 * A route is one placement of a session on a worker (a random 128-bit id). Re-placing a session
 * (worker died, drained) makes a new route, so a stale worker can never answer on the new one,
 * and a route carries one client's frames only: a frame of one client never reaches another.
 *
 * A body starting with `{` is JSON; any other first byte is a frame kind (1..3) of the binary
 * protocol, so client messages cross NATS unchanged.
 *
 * @module
 */

import { HEADER_BYTES, KIND, PROTOCOL_VERSION } from "../examples/server/app.ts";

export { HEADER_BYTES, KIND, PROTOCOL_VERSION };

/** Subject names. */
export const SUBJECT = {
  heartbeat: "l2d.hb",
  heartbeatRequest: "l2d.hb.req",
  open: (worker: string) => `l2d.w.${worker}.open`,
  attach: (session: string) => `l2d.attach.${session}`,
  in: (route: string) => `l2d.r.${route}.in`,
  out: (route: string) => `l2d.r.${route}.out`,
} as const;

/** One device of a worker, as advertised. */
export interface DeviceAdvert {
  /** "cpu", "cuda:0", ... (with an index suffix when a worker has several CPU stand-ins). */
  name: string;
  /** Stream slots in all. */
  slots: number;
  /** Slots in use. */
  used: number;
  /** Output frames per second over the last 5 s. */
  fps: number;
  /** Native calls queued or running. */
  queue: number;
  /** Backend memory in use (bytes). */
  bytesInUse: number;
}

/** A worker's heartbeat. */
export interface WorkerAdvert {
  id: string;
  host: string;
  /** Draining workers take no new sessions. */
  draining: boolean;
  /** Stream size every session of this worker gets. */
  width: number;
  height: number;
  synthetic: boolean;
  notice: string | null;
  devices: DeviceAdvert[];
  /** Milliseconds between heartbeats (gateways expire a worker after a few missed ones). */
  heartbeatMs: number;
}

/** Stream settings of a session (validated: see {@linkcode parseSettings}). */
export interface StreamSettings {
  prompt: string;
  seed: number;
  steps: number | null;
  strength: number | null;
  format: "raw" | "jpeg";
}

/** Asks a worker to host a session. */
export interface OpenRequest {
  session: string;
  route: string;
  settings: StreamSettings;
  /** The client connection (on a gateway) the session belongs to; see {@linkcode GatewayControl}. */
  owner: string;
}

/** A worker's answer to an open or attach. */
export type OpenReply =
  | { ok: true; worker: string; device: string; route: string; width: number; height: number }
  | { ok: false; code: "SERVER_FULL" | "DRAINING" | "BAD_MESSAGE"; message: string };

/**
 * Worker → gateway events on a route that are not for the client: `moving` (the worker drains:
 * place the session elsewhere) and `gone` (the worker no longer has the route).
 */
export type WorkerEvent = { type: "moving" } | { type: "gone"; message: string };

/**
 * Gateway → worker control messages besides the client's own (`start`, `prompt`). A `close` ends
 * the session only when it comes from its current owner: after a client resumed through another
 * gateway (`l2d.attach.<session>` with the new owner as body), the old gateway noticing the old
 * socket's end must not close it.
 */
export type GatewayControl = { type: "keep" } | { type: "close"; owner: string };

/** A client error with a protocol code. */
export class ClientError extends Error {
  /** Creates an error with a protocol `code` (BAD_MESSAGE, BAD_FRAME, ...). */
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "ClientError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a JSON message for NATS. */
export function encodeJson(message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message));
}

/** True when a NATS body is JSON (first byte `{`), false when it is a binary frame. */
export function isJson(body: Uint8Array): boolean {
  return body.byteLength > 0 && body[0] === 0x7b;
}

/** Decodes a JSON body; null when it is not a JSON object. */
export function decodeJson(body: Uint8Array): Record<string, unknown> | null {
  try {
    const v = JSON.parse(decoder.decode(body));
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** Parses a client's text message into a JSON object (BAD_MESSAGE otherwise). */
export function parseClientText(text: string, maxChars: number): Record<string, unknown> {
  if (text.length > maxChars) {
    throw new ClientError("BAD_MESSAGE", `Text messages are limited to ${maxChars} characters`);
  }
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new ClientError("BAD_MESSAGE", "Text messages must be JSON objects");
  }
  if (!msg || typeof msg !== "object" || Array.isArray(msg)) {
    throw new ClientError("BAD_MESSAGE", "Text messages must be JSON objects");
  }
  return msg as Record<string, unknown>;
}

/** Validates a prompt (a string of at most 1000 characters). */
export function parsePrompt(value: unknown): string {
  if (typeof value !== "string") throw new ClientError("BAD_MESSAGE", "prompt must be a string");
  if (value.length > 1000) throw new ClientError("BAD_MESSAGE", "prompt must be at most 1000 characters");
  return value;
}

/** Validates a `start` message's settings with the single-machine server's rules. */
export function parseSettings(msg: Record<string, unknown>): StreamSettings {
  const prompt = parsePrompt(msg.prompt);
  const seed = msg.seed === undefined ? 0 : Number(msg.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new ClientError("BAD_MESSAGE", "seed must be an integer in 0..4294967295");
  }
  let steps: number | null = null, strength: number | null = null;
  if (msg.strength !== undefined && msg.strength !== null) {
    strength = Number(msg.strength);
    if (!(strength > 0 && strength <= 1)) throw new ClientError("BAD_MESSAGE", "strength must be in (0, 1]");
    steps = msg.steps === undefined ? 2 : Number(msg.steps);
    if (!Number.isInteger(steps) || steps < 1 || steps > 4) {
      throw new ClientError("BAD_MESSAGE", "steps must be an integer in 1..4");
    }
  } else if (msg.steps !== undefined && msg.steps !== null) { // null: as absent (settings sent between nodes)
    throw new ClientError("BAD_MESSAGE", "steps needs strength");
  }
  const format = msg.format ?? "raw";
  if (format !== "raw" && format !== "jpeg") throw new ClientError("BAD_MESSAGE", 'format must be "raw" or "jpeg"');
  return { prompt, seed, steps, strength, format };
}

/** A binary frame's header fields. */
export interface FrameHeader {
  kind: number;
  width: number;
  height: number;
  seq: number;
}

/** Validates a client's binary frame (header, kind, size, raw payload length). */
export function parseFrameHeader(bytes: Uint8Array, maxFrameBytes: number, maxFrameSide: number): FrameHeader {
  if (bytes.byteLength > maxFrameBytes) {
    throw new ClientError("FRAME_TOO_LARGE", `Frames are limited to ${maxFrameBytes} bytes, got ${bytes.byteLength}`);
  }
  if (bytes.byteLength < HEADER_BYTES) throw new ClientError("BAD_FRAME", "Frame shorter than its 16-byte header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = view.getUint8(0), version = view.getUint8(1);
  const width = view.getUint16(2, true), height = view.getUint16(4, true), seq = view.getUint32(8, true);
  if (version !== PROTOCOL_VERSION) throw new ClientError("BAD_FRAME", `Unsupported frame version ${version}`);
  if (kind !== KIND.JPEG && kind !== KIND.RGBA && kind !== KIND.RGB) {
    throw new ClientError("BAD_FRAME", `Unknown frame kind ${kind}`);
  }
  if (width < 1 || height < 1 || width > maxFrameSide || height > maxFrameSide) {
    throw new ClientError("BAD_FRAME", `Frame size ${width}x${height} must be 1..${maxFrameSide} on each side`);
  }
  if (kind !== KIND.JPEG) {
    const need = width * height * (kind === KIND.RGBA ? 4 : 3);
    if (bytes.byteLength - HEADER_BYTES !== need) {
      throw new ClientError("BAD_FRAME", `A raw ${width}x${height} frame needs ${need} bytes`);
    }
  }
  return { kind, width, height, seq };
}

/** The `ack` field (input seq consumed) of an output frame. */
export function frameAck(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(12, true);
}
