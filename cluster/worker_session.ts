/**
 * One session on a worker: the stream of one client on one device, fed from its NATS route.
 * Latest frame wins: at most one frame waits (a newer one replaces it and the gateway is told
 * `dropped`), and native calls of all sessions of a device run one at a time in FIFO order.
 *
 * Every frame the worker receives is answered exactly once, so the gateway can count frames in
 * flight: by an output frame (its `ack` field), an `ack` (warm-up), an `error` with the frame's
 * `seq`, or a `dropped`.
 *
 * @module
 */

import type { Device, LiveStream } from "./devices.ts";
import { decodeInput, encodeJpeg, encodeOutput } from "./codec.ts";
import {
  ClientError,
  decodeJson,
  type FrameHeader,
  HEADER_BYTES,
  isJson,
  KIND,
  parseFrameHeader,
  parsePrompt,
  parseSettings,
  type StreamSettings,
} from "./protocol.ts";
import { WARMUP_FRAMES } from "../ffi/stream.ts";

/** Limits and outputs of a session. */
export interface SessionContext {
  /** The worker's id (told to the client in `ready`). */
  workerId: string;
  width: number;
  height: number;
  /** Largest message in either direction (the NATS server's max_payload). */
  maxFrameBytes: number;
  maxFrameSide: number;
  jpegQuality: number;
  /** Sends a message to the client's gateway (JSON object or output frame bytes). */
  send(message: Record<string, unknown> | Uint8Array): void;
  log(line: string): void;
}

interface PendingFrame {
  header: FrameHeader;
  payload: Uint8Array;
}

/** A client's stream on a worker. */
export class WorkerSession {
  stream: LiveStream | null = null;
  settings: StreamSettings | null = null;
  nextSettings: StreamSettings | null;
  nextPrompt: string | null = null;
  pending: PendingFrame | null = null;
  running = false;
  closed = false;
  /** Seqs of the last `latency + 1` pushes (a push outputs the frame pushed `latency` earlier). */
  history: number[] = [];
  pushes = 0;
  /** When the gateway last spoke on the route (idle sessions are closed: their gateway died). */
  lastSeen = performance.now();
  readonly stats = { received: 0, processed: 0, dropped: 0, outputs: 0 };
  /** The gateway connection that may close the session (changes when a client resumes elsewhere). */
  owner: string;

  constructor(
    readonly id: string,
    readonly route: string,
    readonly device: Device,
    settings: StreamSettings,
    owner: string,
    readonly ctx: SessionContext,
  ) {
    this.nextSettings = settings;
    this.owner = owner;
  }

  /** Handles one message from the route. Returns false when the gateway closed the session. */
  onMessage(body: Uint8Array): boolean {
    this.lastSeen = performance.now();
    if (this.closed) return false;
    try {
      if (isJson(body)) return this.#onJson(body);
      this.#onFrame(body);
    } catch (e) {
      if (!(e instanceof ClientError)) throw e;
      const seq = !isJson(body) && body.byteLength >= 12
        ? new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(8, true)
        : undefined;
      this.ctx.send({ type: "error", code: e.code, message: e.message, ...(seq !== undefined ? { seq } : {}) });
    }
    return true;
  }

  #onJson(body: Uint8Array): boolean {
    const m = decodeJson(body);
    if (!m) throw new ClientError("BAD_MESSAGE", "Text messages must be JSON objects");
    switch (m.type) {
      case "keep":
        return true;
      case "close":
        return m.owner !== this.owner; // a former owner's close is stale
      case "start":
        this.nextSettings = parseSettings(m);
        this.nextPrompt = null;
        void this.pump();
        return true;
      case "prompt":
        this.nextPrompt = parsePrompt(m.prompt);
        void this.pump();
        return true;
      default:
        throw new ClientError("BAD_MESSAGE", `Unknown message type ${JSON.stringify(String(m.type)).slice(0, 40)}`);
    }
  }

  #onFrame(body: Uint8Array) {
    const header = parseFrameHeader(body, this.ctx.maxFrameBytes, this.ctx.maxFrameSide);
    this.stats.received++;
    if (this.pending) {
      this.stats.dropped++;
      this.ctx.send({ type: "dropped", seq: this.pending.header.seq });
    }
    // Copy: the NATS client may reuse its read buffer.
    this.pending = { header, payload: body.slice(HEADER_BYTES) };
    void this.pump();
  }

  /** Runs pending work, one native call at a time through the device's queue. */
  async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.closed && (this.nextSettings || this.nextPrompt !== null || (this.pending && this.stream))) {
        // The first warm-up pushes only store their frame: they need not wait behind other streams.
        const urgent = !this.nextSettings && this.nextPrompt === null && this.stream !== null &&
          this.pushes < WARMUP_FRAMES - 1;
        await this.device.queue.run(() => this.#step(), urgent).catch((e) => {
          const seq = e instanceof FrameFailure ? e.seq : undefined;
          const cause = e instanceof FrameFailure ? e.cause : e;
          const code = cause instanceof ClientError ? cause.code : "ENGINE";
          if (code === "ENGINE") this.ctx.log(`session ${this.id.slice(0, 8)}: ${errorText(cause)}`);
          this.ctx.send({ type: "error", code, message: errorText(cause), ...(seq !== undefined ? { seq } : {}) });
        });
      }
    } finally {
      this.running = false;
      if (this.closed) this.#release();
    }
  }

  async #step() {
    if (this.closed) return;
    if (this.nextSettings) return await this.#applySettings(this.nextSettings);
    if (this.nextPrompt !== null) {
      const prompt = this.nextPrompt;
      this.nextPrompt = null;
      await this.stream!.setPrompt(prompt);
      this.settings!.prompt = prompt;
      this.ctx.send({ type: "prompt", prompt });
      return;
    }
    const frame = this.pending;
    const stream = this.stream;
    if (!frame || !stream) return;
    this.pending = null;
    const seq = frame.header.seq;
    try {
      const input = decodeInput(frame.header, frame.payload, this.ctx.maxFrameSide);
      const t0 = performance.now();
      const out = await stream.push(input);
      const ms = performance.now() - t0;
      this.stats.processed++;
      this.pushes++;
      this.history.push(seq);
      if (this.history.length > stream.latency + 1) this.history.shift();
      this.device.recordPush(out !== null);
      if (!out) {
        this.ctx.send({ type: "ack", seq, warmup: Math.max(0, WARMUP_FRAMES + stream.latency - this.pushes) });
        return;
      }
      const jpeg = this.settings?.format === "jpeg";
      const payload = jpeg ? encodeJpeg(out, this.ctx.jpegQuality) : out.data;
      const message = encodeOutput(
        jpeg ? KIND.JPEG : KIND.RGB,
        out.width,
        out.height,
        payload,
        this.history[0]!,
        seq,
        ms,
      );
      if (message.byteLength > this.ctx.maxFrameBytes) { // NATS would refuse it: say why instead
        throw new ClientError(
          "FRAME_TOO_LARGE",
          `The ${out.width}x${out.height} output takes ${message.byteLength} bytes, over the NATS max_payload ` +
            `(${this.ctx.maxFrameBytes}): use format "jpeg" or raise max_payload`,
        );
      }
      this.stats.outputs++;
      this.ctx.send(message);
    } catch (e) {
      throw new FrameFailure(seq, e);
    }
  }

  async #applySettings(s: StreamSettings) {
    const old = this.settings;
    try {
      if (this.stream && old && old.seed === s.seed && old.steps === s.steps && old.strength === s.strength) {
        if (old.prompt !== s.prompt) await this.stream.setPrompt(s.prompt);
      } else {
        // Inside the device queue no native call runs, so the old stream can be closed here.
        this.stream?.close();
        this.stream = null;
        this.stream = await this.device.host.createStream({
          prompt: s.prompt,
          width: this.ctx.width,
          height: this.ctx.height,
          seed: s.seed,
          ...(s.strength !== null ? { strength: s.strength, steps: s.steps! } : {}),
        });
        this.history = [];
        this.pushes = 0;
      }
      this.settings = s;
    } catch (e) {
      if (!this.stream) { // frames now get NOT_STARTED until a good "start"
        this.settings = null;
        this.#dropPending();
      }
      throw e;
    } finally {
      if (this.nextSettings === s) this.nextSettings = null; // a newer "start" stays queued
    }
    const st = this.stream!;
    this.ctx.send({
      type: "ready",
      width: st.width,
      height: st.height,
      steps: s.steps,
      latency: st.latency,
      warmup: WARMUP_FRAMES,
      format: s.format,
      seed: s.seed,
      prompt: s.prompt,
      device: this.device.name,
      worker: this.ctx.workerId,
    });
    if (this.pending && !this.stream) this.#dropPending();
  }

  #dropPending() {
    if (!this.pending) return;
    this.ctx.send({
      type: "error",
      code: "NOT_STARTED",
      message: 'Send "start" before frames',
      seq: this.pending.header.seq,
    });
    this.pending = null;
  }

  /** Ends the session: no more work; the stream closes when the running call returns. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = null;
    this.nextSettings = null;
    this.nextPrompt = null;
    if (!this.running) this.#release();
  }

  #release() {
    if (this.stream) {
      try {
        this.stream.close();
      } catch { /* BUSY cannot happen when not running */ }
      this.stream = null;
    }
  }
}

/** An error while a frame was being processed (carries its seq so the gateway can count it). */
class FrameFailure extends Error {
  constructor(readonly seq: number, override readonly cause: unknown) {
    super(errorText(cause));
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
