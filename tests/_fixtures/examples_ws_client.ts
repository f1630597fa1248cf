/**
 * Test helpers for the examples' WebSocket protocol (examples/server/app.ts): a client that
 * collects JSON messages and frames, frame encoding and solid-colour test frames.
 *
 * @module
 */

import { HEADER_BYTES, PROTOCOL_VERSION } from "../../examples/server/app.ts";

/** A decoded binary message. */
export interface WireFrame {
  kind: number;
  width: number;
  height: number;
  engineMs: number;
  seq: number;
  ack: number;
  payload: Uint8Array;
}

/** Encodes a frame message (16-byte header + payload). */
export function encodeFrame(kind: number, width: number, height: number, seq: number, payload: Uint8Array): Uint8Array {
  const msg = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const view = new DataView(msg.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, PROTOCOL_VERSION);
  view.setUint16(2, width, true);
  view.setUint16(4, height, true);
  view.setUint32(8, seq, true);
  msg.set(payload, HEADER_BYTES);
  return msg;
}

/** Decodes a frame message. */
export function decodeFrame(buf: ArrayBuffer): WireFrame {
  const view = new DataView(buf);
  return {
    kind: view.getUint8(0),
    width: view.getUint16(2, true),
    height: view.getUint16(4, true),
    engineMs: view.getUint16(6, true),
    seq: view.getUint32(8, true),
    ack: view.getUint32(12, true),
    payload: new Uint8Array(buf, HEADER_BYTES),
  };
}

/** A solid-colour RGBA frame. */
export function solidRgba(width: number, height: number, rgb: [number, number, number]): Uint8Array {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i += 4) data.set([rgb[0], rgb[1], rgb[2], 255], i);
  return data;
}

type Json = Record<string, unknown> & { type: string };

/** A protocol client that records everything it receives. */
export class TestClient {
  readonly ws: WebSocket;
  readonly json: Json[] = [];
  readonly frames: WireFrame[] = [];
  closeEvent: CloseEvent | null = null;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  #waiters = new Set<() => void>();

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(), { once: true });
      this.ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (e) => {
        this.closeEvent = e;
        this.#notify();
        resolve(e);
      });
    });
    this.ws.addEventListener("message", (e) => {
      if (typeof e.data === "string") this.json.push(JSON.parse(e.data));
      else this.frames.push(decodeFrame(e.data as ArrayBuffer));
      this.#notify();
    });
  }

  #notify() {
    for (const w of this.#waiters) w();
  }

  /** Waits until `pred` holds (re-checked on every message), or fails after `ms`. */
  async until<T>(pred: () => T | undefined | false | null, what: string, ms = 30_000): Promise<T> {
    const deadline = Date.now() + ms;
    while (true) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      let wake!: () => void;
      const p = new Promise<void>((r) => (wake = r));
      this.#waiters.add(wake);
      const timer = setTimeout(wake, 200);
      await p;
      clearTimeout(timer);
      this.#waiters.delete(wake);
    }
  }

  /** The first JSON message of a type (waiting for it). */
  message(type: string, ms?: number, from = 0): Promise<Json> {
    return this.until(() => this.json.slice(from).find((m) => m.type === type), `a "${type}" message`, ms);
  }

  /** The first error with a code (waiting for it). */
  error(code: string, ms?: number): Promise<Json> {
    return this.until(() => this.json.find((m) => m.type === "error" && m.code === code), `error ${code}`, ms);
  }

  sendJson(msg: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** The highest input seq the server has consumed (acks and outputs). */
  get acked(): number {
    let a = 0;
    for (const m of this.json) if (m.type === "ack") a = Math.max(a, m.seq as number);
    for (const f of this.frames) a = Math.max(a, f.ack);
    return a;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CONNECTING) await this.opened.catch(() => {});
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await this.closed;
  }
}
