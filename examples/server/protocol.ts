/**
 * The browser-facing protocol shared by the single-machine server (`app.ts`) and the cluster
 * gateway (`cluster/gateway.ts`): frame header constants, the checks of client messages
 * (text, `start` settings, prompts, binary frame headers), the per-client message rate limit, and
 * the page routes with their same-origin WebSocket guard. The protocol itself is documented in
 * `app.ts`.
 *
 * @module
 */

import type { Hono, MiddlewareHandler } from "hono";

/** Frame kinds of the binary protocol. */
export const KIND = { JPEG: 1, RGBA: 2, RGB: 3 } as const;
/** Size of a binary frame's header. */
export const HEADER_BYTES = 16;
/** Protocol version (header byte 1). */
export const PROTOCOL_VERSION = 1;
/** Longest prompt in characters. */
export const MAX_PROMPT_CHARS = 1000;

/** A client error with a protocol code (BAD_MESSAGE, BAD_FRAME, FRAME_TOO_LARGE, NOT_STARTED, ...). */
export class ClientError extends Error {
  /** The frame it is about: sent with the error so a self-clocked client can send its next frame. */
  seq?: number;
  /** Creates an error with a protocol `code`. */
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "ClientError";
  }
}

/** Validated stream settings of a `start` message (see {@linkcode parseSettings}). */
export interface StreamSettings {
  prompt: string;
  seed: number;
  steps: number | null;
  strength: number | null;
  format: "raw" | "jpeg";
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

/** Validates a prompt (a string of at most {@linkcode MAX_PROMPT_CHARS} characters). */
export function parsePrompt(value: unknown): string {
  if (typeof value !== "string") throw new ClientError("BAD_MESSAGE", "prompt must be a string");
  if (value.length > MAX_PROMPT_CHARS) {
    throw new ClientError("BAD_MESSAGE", `prompt must be at most ${MAX_PROMPT_CHARS} characters`);
  }
  return value;
}

/**
 * Validates a `start` message's settings. `steps` and `strength` go together (strength alone takes
 * 2 steps); a null `steps` or `strength` counts as absent (settings relayed between cluster nodes).
 */
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
  } else if (msg.steps !== undefined && msg.steps !== null) {
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

/**
 * Validates a client's binary frame: its size, then the header (version, kind, sides) and a raw
 * frame's payload length. Errors about a readable header carry the frame's `seq`.
 */
export function parseFrameHeader(bytes: Uint8Array, maxFrameBytes: number, maxFrameSide: number): FrameHeader {
  if (bytes.byteLength > maxFrameBytes) {
    throw new ClientError("FRAME_TOO_LARGE", `Frames are limited to ${maxFrameBytes} bytes, got ${bytes.byteLength}`);
  }
  if (bytes.byteLength < HEADER_BYTES) throw new ClientError("BAD_FRAME", "Frame shorter than its 16-byte header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = view.getUint8(0), version = view.getUint8(1);
  const width = view.getUint16(2, true), height = view.getUint16(4, true), seq = view.getUint32(8, true);
  const bad = (message: string) => Object.assign(new ClientError("BAD_FRAME", message), { seq });
  if (version !== PROTOCOL_VERSION) throw bad(`Unsupported frame version ${version}`);
  if (kind !== KIND.JPEG && kind !== KIND.RGBA && kind !== KIND.RGB) throw bad(`Unknown frame kind ${kind}`);
  if (width < 1 || height < 1 || width > maxFrameSide || height > maxFrameSide) {
    throw bad(`Frame size ${width}x${height} must be 1..${maxFrameSide} on each side`);
  }
  if (kind !== KIND.JPEG) {
    const need = width * height * (kind === KIND.RGBA ? 4 : 3);
    if (bytes.byteLength - HEADER_BYTES !== need) throw bad(`A raw ${width}x${height} frame needs ${need} bytes`);
  }
  return { kind, width, height, seq };
}

/**
 * A client's message budget: a token bucket of `rate` messages per second with one second of
 * burst. A message over the budget is dropped; one error a second tells the client, never one per
 * message.
 */
export class MessageRateLimit {
  #tokens: number;
  #lastRefill = performance.now();
  #lastReport = -Infinity;

  /** A full bucket of `rate` messages per second. */
  constructor(readonly rate: number) {
    this.#tokens = rate;
  }

  /** "ok": the message may be handled; "drop": drop it silently; "report": drop it and send an error. */
  take(now: number = performance.now()): "ok" | "drop" | "report" {
    this.#tokens = Math.min(this.rate, this.#tokens + (now - this.#lastRefill) * this.rate / 1000);
    this.#lastRefill = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return "ok";
    }
    if (now - this.#lastReport <= 1000) return "drop";
    this.#lastReport = now;
    return "report";
  }

  /** The error message sent with "report". */
  get message(): string {
    return `Too many messages: at most ${this.rate} per second; extra ones are dropped`;
  }
}

/**
 * Refuses a cross-origin WebSocket upgrade (403): browsers send Origin, and only a page of this
 * host may stream (stops other sites driving a local server or the service).
 */
export const sameOriginWebSocket: MiddlewareHandler = async (c, next) => {
  const origin = c.req.header("origin");
  if (origin && c.req.header("upgrade") === "websocket") {
    let ok = false;
    try {
      ok = new URL(origin).host === c.req.header("host");
    } catch { /* malformed */ }
    if (!ok) return c.json({ error: "FORBIDDEN", message: "Cross-origin WebSocket refused" }, 403);
  }
  await next();
};

/** The page's files (under `public/`) and their content types. */
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=UTF-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/page_session.js": { file: "page_session.js", type: "text/javascript; charset=utf-8" },
};

/** Adds the webcam page's routes (`/` and its scripts, read once) to `app`. */
export function servePage(app: Hono): void {
  const cache = new Map<string, Promise<string>>();
  for (const [route, { file, type }] of Object.entries(PAGE_FILES)) {
    app.get(route, async (c) => {
      let text = cache.get(file);
      if (!text) {
        text = fetch(new URL(`./public/${file}`, import.meta.url)).then((r) => r.text());
        cache.set(file, text);
      }
      c.header("content-type", type);
      return c.body(await text);
    });
  }
}
