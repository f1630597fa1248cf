/**
 * The messages between gateways and workers on NATS, and the checks both sides apply to client
 * messages. Browser-facing messages and their checks are the single-machine server's
 * (examples/server/protocol.ts, re-exported here).
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

import type { StreamSettings } from "../examples/server/protocol.ts";

// The client-message checks are the single-machine server's: one module for both.
export {
  ClientError,
  type FrameHeader,
  HEADER_BYTES,
  KIND,
  parseClientText,
  parseFrameHeader,
  parsePrompt,
  parseSettings,
  PROTOCOL_VERSION,
  type StreamSettings,
} from "../examples/server/protocol.ts";

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

/** The `ack` field (input seq consumed) of an output frame. */
export function frameAck(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(12, true);
}
