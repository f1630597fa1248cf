/**
 * The live webcam demo as a Hono app: a page at `/`, frames over a WebSocket at `/ws`, an MJPEG
 * stream of each client's output at `/mjpeg/:id` (usable as an OBS browser source) and metrics at
 * `/health` (JSON) and `/metrics` (Prometheus text).
 *
 * Serve the default instance with `deno task serve` (see `main.ts`), or build one with
 * {@linkcode createLive2DiffServer} and pass `server.app.fetch` to `Deno.serve`.
 *
 * ## WebSocket protocol (`/ws`)
 *
 * Text messages are JSON objects with a `type`:
 * - client → server: `{"type":"start","prompt":"...","seed":0,"steps":2,"strength":0.5,"format":"raw"}`
 *   (creates or re-creates the client's stream; `steps`/`strength`/`seed` changes start a new
 *   stream, a prompt change alone does not), `{"type":"prompt","prompt":"..."}` (live prompt
 *   change, keeps the caches), `{"type":"ping","t":123}`.
 * - server → client: `hello` (client id, MJPEG path, stream size, engine notice), `ready` (stream
 *   created), `prompt` (prompt applied), `ack` (a frame was consumed without output: warm-up),
 *   `pong`, `error` (`code`: BAD_MESSAGE, BAD_FRAME, FRAME_TOO_LARGE, NOT_STARTED, RATE_LIMITED,
 *   SERVER_FULL, IDLE, ENGINE; an error about a frame carries its `seq`). `hello` carries the limits (`limits`) and what the engine can
 *   serve (`capacity`); messages sent before `hello` are ignored.
 *
 * Binary messages are frames: a 16-byte little-endian header, then the payload.
 *
 * | bytes | field |
 * |-------|-------|
 * | 0     | kind: 1 = JPEG, 2 = raw RGBA, 3 = raw RGB |
 * | 1     | version: 1 |
 * | 2..3  | width (u16) |
 * | 4..5  | height (u16) |
 * | 6..7  | output: engine time of the push in ms (u16, saturating); input: 0 |
 * | 8..11 | seq (u32): input: the client's frame number; output: the input frame it came from |
 * | 12..15| ack (u32): output: the input frame whose push produced it; input: 0 |
 *
 * The frame constants, the checks of client messages, the rate limit and the page routes live in
 * `protocol.ts`, shared with the cluster gateway (`cluster/gateway.ts`); the page's own protocol
 * decisions (rewarm, retry, reconnect with resume) in `public/page_session.js`.
 *
 * Flow control is latest-frame-wins: each client has at most one pending frame on the server (a
 * newer frame replaces it, counted as dropped), outputs are skipped while the socket's send buffer
 * is over `maxBufferedBytes`, and a token bucket limits messages per second.
 *
 * Untrusted clients (see `docs` of each limit in {@linkcode ServerOptions}):
 * - Native calls of all clients run one at a time, shared fairly by engine time (`scheduler.ts`):
 *   every admitted client with a frame waiting makes progress.
 * - Admission: at most `maxClients`, and no more than the engine can serve with a first output for
 *   each within `maxFirstFrameMs` when they all start together (`capacity.ts`, measured once per
 *   engine and size); `/health` and `hello` give the effective maximum.
 * - A client that holds a slot without streaming frames for `idleTimeoutMs` is closed (code 4000,
 *   after an `IDLE` error), freeing its slot.
 * - JPEG frames: the declared size (SOF marker) must match the frame header and stay within
 *   `maxJpegPixels` and `maxJpegMemoryMB` BEFORE anything is decoded (`jpeg_header.ts`); decoding
 *   runs in a bounded Worker pool (`jpeg_pool.ts`) with a time limit, off the event loop.
 * - Deno's WebSocket closes a connection whose message exceeds 64 MiB before the app sees it (no
 *   reply is possible on that socket): `limits.maxMessageBytes` in `hello` says so, the page checks
 *   its frames against `maxFrameBytes` before sending, and the server logs and counts such closes.
 *
 * @module
 */

import { Hono } from "hono";
import { upgradeWebSocket } from "hono/deno";
import type { WSContext } from "hono/ws";
import jpeg from "jpeg-js";
import type { Frame } from "../../mod.ts";
import { loadEngine } from "../_engine.ts";
import { calibrate, type EngineCost, servableClients, updateCost, WARMUP_PUSHES } from "./capacity.ts";
import type { ServerEngine, ServerStream } from "./engine_types.ts";
import { JpegDecoderPool } from "./jpeg_pool.ts";
import { JpegHeaderError, readJpegHeader } from "./jpeg_header.ts";
import { trimMalloc } from "./malloc.ts";
import { FairScheduler } from "./scheduler.ts";
import {
  ClientError,
  type FrameHeader,
  HEADER_BYTES,
  KIND,
  MessageRateLimit,
  parseClientText,
  parseFrameHeader,
  parsePrompt,
  parseSettings,
  PROTOCOL_VERSION,
  sameOriginWebSocket,
  servePage,
  type StreamSettings,
} from "./protocol.ts";

export type { ServerEngine, ServerStream } from "./engine_types.ts";
export type { EngineCost } from "./capacity.ts";

export { HEADER_BYTES, KIND, PROTOCOL_VERSION } from "./protocol.ts";
/** Deno's WebSocket message cap: a bigger message closes the connection before the app sees it. */
export const DENO_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Close code of a client closed for idling (application range 4000..4999). */
export const CLOSE_IDLE = 4000;

/** Options of {@linkcode createLive2DiffServer}. */
export interface ServerOptions {
  /** The engine, or a loader called once on first need. @default `--engine`/LIVE2DIFF_ENGINE, else the default engine */
  engine?: ServerEngine | (() => Promise<ServerEngine>);
  /** Stream width. @default 64 on the CPU, 512 on CUDA */
  width?: number;
  /** Stream height. @default the width */
  height?: number;
  /** Most clients streaming at once; more are refused with SERVER_FULL (see also `maxFirstFrameMs`). @default 4 */
  maxClients?: number;
  /**
   * Admit no more clients than can all get a first output within this time when they start
   * together, from the engine's measured cost (its warm-up and pushes). @default 60000
   */
  maxFirstFrameMs?: number;
  /** The engine's cost per stream, instead of measuring it when the engine loads. */
  engineCost?: EngineCost;
  /** A client that sends no frame for this long while the server owes it nothing is closed. @default 30000 */
  idleTimeoutMs?: number;
  /** Most pixels of a JPEG frame (its declared size is checked before decoding). @default 1920*1080 */
  maxJpegPixels?: number;
  /** Most memory decoding one JPEG may take (estimated from its frame header before decoding). @default 64 */
  maxJpegMemoryMB?: number;
  /** JPEG decodes running at once (Workers). @default 2 */
  jpegWorkers?: number;
  /** Longest JPEG decode; a slower one fails with BAD_FRAME. @default 5000 */
  jpegTimeoutMs?: number;
  /** Largest binary frame message in bytes. @default 4 MiB */
  maxFrameBytes?: number;
  /** Largest text message in characters. @default 4096 */
  maxTextBytes?: number;
  /** Largest frame side in pixels (raw frames are bounded by `maxFrameBytes` too). @default 4096 */
  maxFrameSide?: number;
  /** Messages per second per client (token bucket, one second of burst). @default 120 */
  maxMessagesPerSecond?: number;
  /** Outputs are skipped while a socket has more than this many bytes unsent. @default 2 MiB */
  maxBufferedBytes?: number;
  /** MJPEG viewers per client. @default 4 */
  maxViewersPerClient?: number;
  /** JPEG quality of MJPEG and JPEG outputs (1..100). @default 80 */
  jpegQuality?: number;
  /**
   * Return free heap memory to the system after streams are closed (glibc `malloc_trim`, between
   * native calls; see `malloc.ts`). @default true
   */
  trimHeapOnRelease?: boolean;
  /** Log lines (client connects, errors). @default none */
  log?: (line: string) => void;
}

/** A frame ready to push (raw, or a JPEG already decoded). */
interface PendingFrame {
  seq: number;
  frame: Frame;
}

/** An MJPEG viewer: latest-frame-wins slot. */
interface Viewer {
  offer(jpegBytes: Uint8Array): void;
  end(): void;
}

/** Per-client state; every field is bounded (one pending frame, one pending config/prompt). */
class Client {
  readonly id = crypto.randomUUID();
  readonly ws: WSContext;
  stream: ServerStream | null = null;
  settings: StreamSettings | null = null;
  nextSettings: StreamSettings | null = null;
  nextPrompt: string | null = null;
  pending: PendingFrame | null = null;
  /** The newest JPEG not yet decoded (latest wins) and whether one is being decoded. */
  jpegWaiting: { seq: number; width: number; height: number; bytes: Uint8Array; decodeBytes: number } | null = null;
  decoding = false;
  /** Last time the client sent a frame or the server finished work for it (idle timeout). */
  lastActive = performance.now();
  running = false;
  closed = false;
  /** seqs of the last `latency + 1` pushes (the output of a push is the frame pushed `latency` earlier). */
  history: number[] = [];
  pushes = 0;
  readonly rate: MessageRateLimit;
  readonly viewers = new Set<Viewer>();
  lastJpeg: Uint8Array | null = null;
  readonly stats = { received: 0, processed: 0, dropped: 0, outputs: 0, outputsSkipped: 0, rateLimited: 0, errors: 0 };

  constructor(ws: WSContext, rate: number) {
    this.ws = ws;
    this.rate = new MessageRateLimit(rate);
  }
}

/** Metrics of a server (the `/health` body). */
export interface ServerMetrics {
  ok: true;
  uptimeS: number;
  engine: { loaded: boolean; synthetic: boolean | null; device: string | null; notice: string | null };
  stream: { width: number | null; height: number | null };
  clients: number;
  /** Clients admitted at most: `maxClients`, or fewer when the engine cannot serve that many in time. */
  maxClients: number;
  /** The configured `maxClients`. */
  configuredMaxClients: number;
  /** The engine's measured cost and what it implies (null until measured). */
  capacity: { warmupMs: number; pushMs: number; servableClients: number; maxFirstFrameMs: number } | null;
  /** The limits clients must respect. */
  limits: ServerLimits;
  refused: number;
  /** Clients closed for idling. */
  idleClosed: number;
  /** Connections Deno closed for a message over its 64 MiB cap. */
  oversizeMessages: number;
  /** JPEG decoding: workers alive, requests waiting, decodes done / failed / timed out. */
  jpeg: { workers: number; queued: number; decoded: number; failed: number; timedOut: number };
  /** Frames waiting on the server, all clients together. */
  pendingFrames: number;
  /** Most frames waiting for any one client (latest-frame-wins: 0 or 1). */
  maxPendingPerClient: number;
  /** Native calls queued or running. */
  engineQueue: number;
  framesReceived: number;
  framesProcessed: number;
  framesDropped: number;
  framesOut: number;
  outputsSkipped: number;
  rateLimited: number;
  errors: number;
  mjpegViewers: number;
  /** Mean engine time per push over the last 5 s (ms). */
  engineMs: number | null;
  /** Output frames per second, all clients, over the last 5 s. */
  fps: number;
  memory: { rss: number; heapUsed: number };
}

/** Limits a client must respect (sent in `hello`, served at `/health`). */
export interface ServerLimits {
  maxFrameBytes: number;
  maxFrameSide: number;
  maxJpegPixels: number;
  maxJpegMemoryMB: number;
  maxTextBytes: number;
  maxMessagesPerSecond: number;
  /** Deno's cap on one WebSocket message: a bigger one closes the connection with no reply. */
  maxMessageBytes: number;
  idleTimeoutMs: number;
}

/** A server instance: the Hono app plus its state. */
export interface Live2DiffServer {
  /** The Hono app (`Deno.serve(server.app.fetch)`). */
  app: Hono;
  /** Current metrics (as served at `/health`). */
  metrics(): ServerMetrics;
  /** The engine, loading it if needed. */
  engine(): Promise<ServerEngine>;
  /** The engine's cost per stream, measuring it if needed (admission waits for it). */
  capacity(): Promise<EngineCost>;
  /** Closes every client socket and stream (the engine is left open). */
  close(): Promise<void>;
}

/** Creates a server with its own clients, limits and (lazily loaded) engine. */
export function createLive2DiffServer(options: ServerOptions = {}): Live2DiffServer {
  const maxClients = options.maxClients ?? 4;
  const maxFrameBytes = options.maxFrameBytes ?? 4 * 1024 * 1024;
  const maxTextBytes = options.maxTextBytes ?? 4096;
  const maxFrameSide = options.maxFrameSide ?? 4096;
  const rate = options.maxMessagesPerSecond ?? 120;
  const maxBuffered = options.maxBufferedBytes ?? 2 * 1024 * 1024;
  const maxViewers = options.maxViewersPerClient ?? 4;
  const quality = options.jpegQuality ?? 80;
  const maxFirstFrameMs = options.maxFirstFrameMs ?? 60_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  const maxJpegPixels = options.maxJpegPixels ?? 1920 * 1080;
  const maxJpegMemoryMB = options.maxJpegMemoryMB ?? 64;
  const limits: ServerLimits = {
    maxFrameBytes,
    maxFrameSide,
    maxJpegPixels,
    maxJpegMemoryMB,
    maxTextBytes,
    maxMessagesPerSecond: rate,
    maxMessageBytes: DENO_MAX_MESSAGE_BYTES,
    idleTimeoutMs,
  };
  const log = options.log ?? (() => {});
  const trimHeap = options.trimHeapOnRelease ?? true;
  const started = performance.now();

  const clients = new Map<string, Client>();
  const scheduler = new FairScheduler<Client>(hasWork, runStep);
  const jpegPool = new JpegDecoderPool({ workers: options.jpegWorkers ?? 2, timeoutMs: options.jpegTimeoutMs ?? 5000 });
  const totals = {
    received: 0,
    processed: 0,
    dropped: 0,
    out: 0,
    skipped: 0,
    rateLimited: 0,
    errors: 0,
    refused: 0,
    idleClosed: 0,
    oversize: 0,
  };
  const recent: { t: number; ms: number; out: boolean }[] = []; // last 5 s of pushes (bounded by time)

  let loaded: ServerEngine | null = options.engine && typeof options.engine !== "function" ? options.engine : null;
  let loading: Promise<ServerEngine> | null = loaded ? Promise.resolve(loaded) : null;
  const getEngine = (): Promise<ServerEngine> => {
    if (!loading) {
      const loader = typeof options.engine === "function" ? options.engine : () => loadEngine();
      loading = loader().then((e) => (loaded = e));
      loading.catch(() => (loading = null)); // retry on the next need
    }
    return loading;
  };
  const size = () => {
    if (!loaded) return { width: options.width ?? null, height: options.height ?? options.width ?? null };
    // The default stream side: small on the CPU (it is slow there), the model's native 512 elsewhere.
    const width = options.width ?? (loaded.device === "cpu" ? 64 : 512);
    return { width, height: options.height ?? width };
  };

  // The engine's cost (measured once per engine and size, then refined by every push) bounds admission.
  let cost: EngineCost | null = options.engineCost ? { ...options.engineCost } : null;
  let costing: Promise<EngineCost> | null = cost ? Promise.resolve(cost) : null;
  const getCost = (): Promise<EngineCost> => {
    if (!costing) {
      costing = getEngine().then(async (engine) => {
        const { width, height } = size();
        log(`measuring the engine at ${width}x${height} (one warm-up and two pushes)`);
        return cost = { ...await calibrate(engine, width!, height!) };
      });
      costing.catch(() => (costing = null));
    }
    return costing;
  };
  const admitLimit = () => cost ? Math.min(maxClients, servableClients(cost, maxFirstFrameMs)) : maxClients;

  // Idle sweep: a client that sent no frame for idleTimeoutMs while the server owed it nothing.
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const c of [...clients.values()]) {
      if (c.running || c.decoding || c.jpegWaiting || hasWork(c) || now - c.lastActive <= idleTimeoutMs) continue;
      totals.idleClosed++;
      const seconds = Math.round(idleTimeoutMs / 100) / 10;
      const message = `No frames for ${seconds} s: the slot is freed for others; reconnect to stream again`;
      fail(c, "IDLE", message);
      log(
        `client ${
          c.id.slice(0, 8)
        } idle for ${seconds} s after ${c.stats.received} frames (${c.stats.processed} pushed)`,
      );
      try {
        c.ws.close(CLOSE_IDLE, `idle: no frames for ${seconds} s`);
      } catch { /* already closed */ }
      dropClient(c);
    }
  }, Math.max(10, Math.min(1000, idleTimeoutMs / 4)));
  Deno.unrefTimer(sweep);

  const send = (client: Client, message: Record<string, unknown>) => {
    if (client.closed || client.ws.readyState !== 1) return;
    try {
      client.ws.send(JSON.stringify(message));
    } catch { /* socket went away */ }
  };
  const fail = (client: Client, code: string, message: string, seq?: number) => {
    client.stats.errors++;
    totals.errors++;
    send(client, { type: "error", code, message, ...(seq !== undefined ? { seq } : {}) });
  };

  function takeToken(client: Client): boolean {
    const verdict = client.rate.take();
    if (verdict === "ok") return true;
    client.stats.rateLimited++;
    totals.rateLimited++;
    if (verdict === "report") fail(client, "RATE_LIMITED", client.rate.message);
    return false;
  }

  function onText(client: Client, text: string) {
    const m = parseClientText(text, maxTextBytes);
    switch (m.type) {
      case "start":
        client.nextSettings = parseSettings(m);
        client.nextPrompt = null;
        scheduler.wake(client);
        return;
      case "prompt":
        if (!client.settings && !client.nextSettings) throw new ClientError("NOT_STARTED", 'Send "start" first');
        client.nextPrompt = parsePrompt(m.prompt);
        scheduler.wake(client);
        return;
      case "ping":
        send(client, { type: "pong", t: typeof m.t === "number" ? m.t : null });
        return;
      default:
        throw new ClientError("BAD_MESSAGE", `Unknown message type ${JSON.stringify(String(m.type)).slice(0, 40)}`);
    }
  }

  function onBinary(client: Client, bytes: Uint8Array) {
    const header = parseFrameHeader(bytes, maxFrameBytes, maxFrameSide); // its errors carry the seq
    try {
      acceptFrame(client, header, bytes.subarray(HEADER_BYTES));
    } catch (e) {
      if (e instanceof ClientError) e.seq = header.seq;
      throw e;
    }
  }

  /** Makes a checked frame the client's next frame (a JPEG is checked further, then decoded). */
  function acceptFrame(client: Client, { kind, width, height, seq }: FrameHeader, payload: Uint8Array) {
    if (!client.settings && !client.nextSettings) throw new ClientError("NOT_STARTED", 'Send "start" before frames');
    const decodeBytes = kind === KIND.JPEG ? checkJpeg(payload, width, height) : 0;
    client.stats.received++;
    totals.received++;
    client.lastActive = performance.now();
    if (kind === KIND.JPEG) {
      if (client.jpegWaiting) drop(client); // latest frame wins
      client.jpegWaiting = { seq, width, height, bytes: payload, decodeBytes };
      startDecode(client);
      return;
    }
    const frame: Frame = { data: payload, width, height, channels: kind === KIND.RGBA ? 4 : 3 };
    offer(client, { seq, frame });
  }

  /**
   * Refuses a JPEG by its frame header, before decoding: size mismatch, too many pixels, too much
   * memory. Returns the bytes decoding it will allocate.
   */
  function checkJpeg(payload: Uint8Array, width: number, height: number): number {
    let header;
    try {
      header = readJpegHeader(payload);
    } catch (e) {
      if (e instanceof JpegHeaderError) throw new ClientError("BAD_FRAME", `Cannot read the JPEG: ${e.message}`);
      throw e;
    }
    if (header.width !== width || header.height !== height) {
      throw new ClientError("BAD_FRAME", `JPEG is ${header.width}x${header.height}, header says ${width}x${height}`);
    }
    if (width * height > maxJpegPixels) {
      throw new ClientError(
        "FRAME_TOO_LARGE",
        `JPEG frames are limited to ${maxJpegPixels} pixels (${(maxJpegPixels / 1e6).toFixed(2)} MP), ` +
          `this one declares ${width}x${height}; send a smaller frame (the stream is ${size().width}x${size().height})`,
      );
    }
    const mb = header.decodeBytes / 2 ** 20;
    if (mb > maxJpegMemoryMB) {
      throw new ClientError(
        "FRAME_TOO_LARGE",
        `Decoding this JPEG would take ${mb.toFixed(0)} MB, the limit is ${maxJpegMemoryMB} MB`,
      );
    }
    return header.decodeBytes;
  }

  /** Decodes the client's newest JPEG in the worker pool (one at a time per client). */
  function startDecode(client: Client) {
    const job = client.jpegWaiting;
    if (client.decoding || !job || client.closed) return;
    client.jpegWaiting = null;
    client.decoding = true;
    // jpeg-js counts the file's own segments too: allow for them on top of the decode estimate.
    const decodeLimits = {
      maxMemoryMB: maxJpegMemoryMB + Math.ceil(maxFrameBytes / 2 ** 20),
      maxMegapixels: maxJpegPixels / 1e6,
      estimateBytes: job.decodeBytes,
    };
    jpegPool.decode(job.bytes, decodeLimits).then((img) => {
      if (img.width !== job.width || img.height !== job.height) {
        throw new ClientError(
          "BAD_FRAME",
          `JPEG decoded to ${img.width}x${img.height}, header says ${job.width}x${job.height}`,
        );
      }
      offer(client, { seq: job.seq, frame: { data: img.data, width: img.width, height: img.height, channels: 3 } });
    }).catch((e) => {
      const message = e instanceof Error ? e.message : String(e);
      if (e instanceof ClientError) fail(client, e.code, message, job.seq);
      else fail(client, "BAD_FRAME", `Cannot decode the JPEG: ${message}`, job.seq);
    }).finally(() => {
      client.decoding = false;
      client.lastActive = performance.now();
      startDecode(client);
    });
  }

  /** Makes `frame` the client's pending frame (latest wins) and wakes the scheduler. */
  function offer(client: Client, frame: PendingFrame) {
    if (client.closed) return;
    if (client.pending) drop(client);
    client.pending = frame;
    scheduler.wake(client);
  }

  function drop(client: Client) {
    client.stats.dropped++;
    totals.dropped++;
  }

  function hasWork(client: Client): boolean {
    return !client.closed && !!(client.nextSettings || client.nextPrompt !== null || (client.pending && client.stream));
  }

  /** One native call for `client` (run by the scheduler); resolves to the engine time to charge it. */
  async function runStep(client: Client): Promise<number> {
    client.running = true;
    const t0 = performance.now();
    let charge: number | null = null;
    try {
      charge = await step(client);
    } catch (e) {
      if (e instanceof ClientError) fail(client, e.code, e.message);
      else {
        log(`client ${client.id.slice(0, 8)}: ${e instanceof Error ? e.message : e}`);
        fail(client, "ENGINE", e instanceof Error ? e.message : String(e));
      }
    } finally {
      client.running = false;
      client.lastActive = performance.now();
    }
    return charge ?? performance.now() - t0;
  }

  /** Runs the client's next piece of work; resolves to the engine time to charge (null: what it took). */
  async function step(client: Client): Promise<number | null> {
    if (client.closed) return 0;
    if (client.nextSettings) {
      const s = client.nextSettings;
      const old = client.settings;
      try {
        if (client.stream && old && old.seed === s.seed && old.steps === s.steps && old.strength === s.strength) {
          if (old.prompt !== s.prompt) await client.stream.setPrompt(s.prompt);
        } else {
          const engine = await getEngine();
          // Inside the queue no native call runs, so the old stream can be closed here.
          client.stream?.close();
          client.stream = null;
          const { width, height } = size();
          client.stream = await engine.createStream({
            prompt: s.prompt,
            width: width!,
            height: height!,
            seed: s.seed,
            ...(s.strength !== null ? { strength: s.strength, steps: s.steps! } : {}),
          });
          client.history = [];
          client.pushes = 0;
        }
        client.settings = s;
      } catch (e) {
        if (!client.stream) { // frames now get NOT_STARTED until a good "start"
          client.settings = null;
          client.pending = null;
        }
        throw e;
      } finally {
        if (client.nextSettings === s) client.nextSettings = null; // a newer "start" stays queued
      }
      const st = client.stream!;
      send(client, {
        type: "ready",
        width: st.width,
        height: st.height,
        steps: st.steps,
        latency: st.latency,
        warmup: 8,
        format: s.format,
        seed: s.seed,
        prompt: s.prompt,
      });
      return null;
    }
    if (client.nextPrompt !== null && !client.stream) {
      client.nextPrompt = null;
      throw new ClientError("NOT_STARTED", 'Send "start" first');
    }
    if (client.nextPrompt !== null) {
      const prompt = client.nextPrompt;
      client.nextPrompt = null;
      await client.stream!.setPrompt(prompt);
      client.settings!.prompt = prompt;
      send(client, { type: "prompt", prompt });
      return null;
    }
    const frame = client.pending;
    if (!frame || !client.stream) return 0;
    client.pending = null;
    const stream = client.stream;
    const t0 = performance.now();
    const out = await stream.push(frame.frame);
    const ms = performance.now() - t0;
    client.stats.processed++;
    totals.processed++;
    client.pushes++;
    client.history.push(frame.seq);
    if (client.history.length > stream.latency + 1) client.history.shift();
    const now = performance.now();
    recent.push({ t: now, ms, out: out !== null });
    while (recent.length && recent[0]!.t < now - 5000) recent.shift();
    // Costs refine the admission estimate; the warm-up is charged like one push, so a newcomer's
    // one-time warm-up does not make it wait while everyone else catches up on engine time.
    let charge = ms;
    if (cost && client.pushes === WARMUP_PUSHES) {
      updateCost(cost, "warmupMs", ms);
      charge = Math.min(ms, cost.pushMs);
    } else if (cost && client.pushes > WARMUP_PUSHES) updateCost(cost, "pushMs", ms);
    if (!out) {
      send(client, { type: "ack", seq: frame.seq, warmup: Math.max(0, 8 + stream.latency - client.pushes) });
      return charge;
    }
    emit(client, out, client.history[0]!, frame.seq, ms);
    return charge;
  }

  function encodeJpeg(out: Frame): Uint8Array {
    const rgba = new Uint8Array(out.width * out.height * 4);
    for (let i = 0, j = 0; i < out.data.length; i += 3, j += 4) {
      rgba[j] = out.data[i]!;
      rgba[j + 1] = out.data[i + 1]!;
      rgba[j + 2] = out.data[i + 2]!;
      rgba[j + 3] = 255;
    }
    return new Uint8Array(jpeg.encode({ data: rgba, width: out.width, height: out.height }, quality).data);
  }

  function emit(client: Client, out: Frame, sourceSeq: number, ackSeq: number, ms: number) {
    const wantJpeg = client.settings?.format === "jpeg";
    const jpegBytes = wantJpeg || client.viewers.size > 0 ? encodeJpeg(out) : null;
    if (jpegBytes) {
      client.lastJpeg = jpegBytes;
      for (const v of client.viewers) v.offer(jpegBytes);
    }
    const raw = client.ws.raw as WebSocket | undefined;
    if (client.closed || client.ws.readyState !== 1) return;
    if (raw && raw.bufferedAmount > maxBuffered) { // slow reader: skip, never queue without bound
      client.stats.outputsSkipped++;
      totals.skipped++;
      return;
    }
    const payload = wantJpeg ? jpegBytes! : out.data;
    const msg = new Uint8Array(HEADER_BYTES + payload.byteLength);
    const view = new DataView(msg.buffer);
    view.setUint8(0, wantJpeg ? KIND.JPEG : KIND.RGB);
    view.setUint8(1, PROTOCOL_VERSION);
    view.setUint16(2, out.width, true);
    view.setUint16(4, out.height, true);
    view.setUint16(6, Math.min(65535, Math.round(ms)), true);
    view.setUint32(8, sourceSeq >>> 0, true);
    view.setUint32(12, ackSeq >>> 0, true);
    msg.set(payload, HEADER_BYTES);
    try {
      client.ws.send(msg);
      client.stats.outputs++;
      totals.out++;
    } catch { /* socket went away */ }
  }

  /**
   * Closes a departed client's stream in the scheduler, between native calls: never while a push
   * of this stream or of any other runs on the shared engine, and after the client's own call in
   * flight (which may still be creating the stream) has finished.
   */
  function releaseStream(client: Client) {
    scheduler.exclusive(() => {
      const stream = client.stream;
      client.stream = null;
      stream?.close();
      if (stream) trimHeapSoon();
    }, (e) => log(`client ${client.id.slice(0, 8)}: closing its stream failed: ${e instanceof Error ? e.message : e}`));
  }

  /** One heap trim after the releases queued now (clients often leave together). */
  let trimQueued = false;
  function trimHeapSoon() {
    if (!trimHeap || trimQueued) return;
    trimQueued = true;
    scheduler.exclusive(() => {
      trimQueued = false;
      trimMalloc();
    });
  }

  function dropClient(client: Client) {
    if (client.closed) return;
    client.closed = true;
    scheduler.remove(client);
    client.jpegWaiting = null;
    client.pending = null;
    client.nextPrompt = null;
    client.nextSettings = null;
    clients.delete(client.id);
    for (const v of client.viewers) v.end();
    client.viewers.clear();
    releaseStream(client);
    log(`client ${client.id.slice(0, 8)} left (${clients.size}/${maxClients})`);
  }

  function mjpegResponse(client: Client): Response | null {
    if (client.viewers.size >= maxViewers) return null;
    let latest: Uint8Array | null = client.lastJpeg;
    let ended = false;
    let wake: (() => void) | null = null;
    const viewer: Viewer = {
      offer(bytes) {
        latest = bytes; // latest frame wins: a slow viewer skips frames
        wake?.();
      },
      end() {
        ended = true;
        wake?.();
      },
    };
    client.viewers.add(viewer);
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (!latest && !ended) await new Promise<void>((r) => (wake = r));
        wake = null;
        if (!latest) {
          controller.close();
          return;
        }
        const bytes: Uint8Array = latest;
        latest = null;
        const head = enc.encode(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${bytes.byteLength}\r\n\r\n`);
        const part = new Uint8Array(head.byteLength + bytes.byteLength + 2);
        part.set(head);
        part.set(bytes, head.byteLength);
        part.set([13, 10], head.byteLength + bytes.byteLength);
        controller.enqueue(part);
      },
      cancel() {
        client.viewers.delete(viewer);
        ended = true;
        wake?.();
      },
    }, { highWaterMark: 0 });
    return new Response(body, {
      headers: {
        "content-type": "multipart/x-mixed-replace; boundary=frame",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
    });
  }

  function metrics(): ServerMetrics {
    let pendingFrames = 0, maxPending = 0, viewers = 0;
    for (const c of clients.values()) {
      const p = c.pending ? 1 : 0;
      pendingFrames += p;
      maxPending = Math.max(maxPending, p);
      viewers += c.viewers.size;
    }
    const now = performance.now();
    const window = recent.filter((r) => r.t >= now - 5000);
    const mem = Deno.memoryUsage();
    const { width, height } = size();
    return {
      ok: true,
      uptimeS: Math.round((now - started) / 1000),
      engine: {
        loaded: loaded !== null,
        synthetic: loaded?.synthetic ?? null,
        device: loaded?.device ?? null,
        notice: loaded?.notice ?? null,
      },
      stream: { width, height },
      clients: clients.size,
      maxClients: admitLimit(),
      configuredMaxClients: maxClients,
      capacity: cost
        ? {
          warmupMs: Math.round(cost.warmupMs),
          pushMs: Math.round(cost.pushMs),
          servableClients: servableClients(cost, maxFirstFrameMs),
          maxFirstFrameMs,
        }
        : null,
      limits,
      refused: totals.refused,
      idleClosed: totals.idleClosed,
      oversizeMessages: totals.oversize,
      jpeg: {
        workers: jpegPool.workers,
        queued: jpegPool.queued,
        decoded: jpegPool.stats.decoded,
        failed: jpegPool.stats.failed,
        timedOut: jpegPool.stats.timedOut,
      },
      pendingFrames,
      maxPendingPerClient: maxPending,
      engineQueue: scheduler.waiting,
      framesReceived: totals.received,
      framesProcessed: totals.processed,
      framesDropped: totals.dropped,
      framesOut: totals.out,
      outputsSkipped: totals.skipped,
      rateLimited: totals.rateLimited,
      errors: totals.errors,
      mjpegViewers: viewers,
      engineMs: window.length ? window.reduce((a, r) => a + r.ms, 0) / window.length : null,
      fps: window.filter((r) => r.out).length / 5,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed },
    };
  }

  const app = new Hono();
  servePage(app);
  app.get("/health", (c) => c.json(metrics()));
  app.get("/metrics", (c) => {
    const m = metrics();
    const lines = [
      ["live2diff_clients", m.clients],
      ["live2diff_max_clients", m.maxClients],
      ["live2diff_clients_refused_total", m.refused],
      ["live2diff_pending_frames", m.pendingFrames],
      ["live2diff_max_pending_per_client", m.maxPendingPerClient],
      ["live2diff_engine_queue", m.engineQueue],
      ["live2diff_frames_received_total", m.framesReceived],
      ["live2diff_frames_processed_total", m.framesProcessed],
      ["live2diff_frames_dropped_total", m.framesDropped],
      ["live2diff_frames_out_total", m.framesOut],
      ["live2diff_outputs_skipped_total", m.outputsSkipped],
      ["live2diff_rate_limited_total", m.rateLimited],
      ["live2diff_errors_total", m.errors],
      ["live2diff_mjpeg_viewers", m.mjpegViewers],
      ["live2diff_fps", m.fps],
      ["live2diff_engine_ms", m.engineMs ?? 0],
      ["live2diff_rss_bytes", m.memory.rss],
    ];
    c.header("content-type", "text/plain; version=0.0.4");
    return c.body(lines.map(([k, v]) => `${k} ${v}`).join("\n") + "\n");
  });
  app.get("/mjpeg/:id", (c) => {
    const client = clients.get(c.req.param("id"));
    if (!client) return c.json({ error: "NOT_FOUND", message: "No such stream (it ended, or the id is wrong)" }, 404);
    return mjpegResponse(client) ??
      c.json({ error: "TOO_MANY_VIEWERS", message: `At most ${maxViewers} viewers per stream` }, 429);
  });
  app.get(
    "/ws",
    sameOriginWebSocket,
    upgradeWebSocket(() => {
      let client: Client | null = null;
      return {
        onOpen: async (_evt, ws) => {
          (ws.raw as WebSocket).binaryType = "arraybuffer";
          let engine: ServerEngine;
          try {
            engine = await getEngine();
            await getCost(); // admission needs the engine's cost (measured once)
          } catch (e) {
            const message = `Cannot load the engine: ${e instanceof Error ? e.message : e}`;
            totals.errors++;
            ws.send(JSON.stringify({ type: "error", code: "ENGINE", message }));
            ws.close(1011, "engine unavailable");
            return;
          }
          if (ws.readyState !== 1) return; // left while the engine loaded
          const limit = admitLimit();
          if (clients.size >= limit) {
            totals.refused++;
            const why = limit < maxClients
              ? ` (this engine gives each of at most ${limit} clients a first frame within ${maxFirstFrameMs / 1000} s)`
              : "";
            const message = `Server full: ${clients.size} clients are streaming${why}; try again later`;
            ws.send(JSON.stringify({ type: "error", code: "SERVER_FULL", message }));
            ws.close(1013, "server full");
            log(`refused a client: ${message}`);
            return;
          }
          const c = new Client(ws, rate);
          client = c;
          clients.set(c.id, c);
          log(`client ${c.id.slice(0, 8)} joined (${clients.size}/${limit})`);
          const { width, height } = size();
          send(c, {
            type: "hello",
            id: c.id,
            mjpeg: `/mjpeg/${c.id}`,
            width,
            height,
            device: engine.device,
            synthetic: engine.synthetic,
            notice: engine.notice,
            maxFrameBytes,
            maxMessagesPerSecond: rate,
            limits,
            capacity: metrics().capacity,
          });
        },
        onMessage: (evt, _ws) => {
          const c = client;
          if (!c || c.closed) return;
          if (!takeToken(c)) return;
          try {
            const data = evt.data;
            if (typeof data === "string") onText(c, data);
            else if (data instanceof ArrayBuffer) onBinary(c, new Uint8Array(data));
            else throw new ClientError("BAD_MESSAGE", "Unsupported message type");
          } catch (e) {
            if (e instanceof ClientError) fail(c, e.code, e.message, e.seq);
            else throw e;
          }
        },
        onClose: () => {
          if (client) dropClient(client);
        },
        onError: (evt) => {
          // Deno reports a message over its 64 MiB cap here, after closing the socket: no reply can
          // reach this client, so it is logged and counted (the page checks maxFrameBytes first).
          const message = evt instanceof ErrorEvent ? evt.message : "";
          if (/too large/i.test(message)) {
            totals.oversize++;
            log(
              `client ${
                client?.id.slice(0, 8) ?? "?"
              }: a message over Deno's ${DENO_MAX_MESSAGE_BYTES} bytes closed it`,
            );
          }
          if (client) dropClient(client);
        },
      };
    }),
    (c) => c.json({ error: "UPGRADE_REQUIRED", message: "This endpoint speaks WebSocket" }, 426),
  );

  return {
    app,
    metrics,
    engine: getEngine,
    capacity: getCost,
    async close() {
      clearInterval(sweep);
      jpegPool.close();
      const all = [...clients.values()];
      for (const c of all) {
        try {
          c.ws.close(1001, "server closing");
        } catch { /* already closed */ }
        dropClient(c);
      }
      await scheduler.idle(); // the call in flight and the stream releases queued behind it
    },
  };
}

/** The default server: the configured engine (or the default one), loaded on first need. */
export const server: Live2DiffServer = createLive2DiffServer();
/** The default server's Hono app. */
export const app: Hono = server.app;
