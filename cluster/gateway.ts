/**
 * A gateway: the Hono app users connect to, with the single-machine server's page and WebSocket
 * protocol (examples/server/app.ts). Each new session is placed on the least-loaded worker
 * ({@linkcode rankWorkers}); frames travel through NATS on the session's route, latest frame
 * wins on every hop: at most {@linkcode FRAMES_IN_FLIGHT} frames of a client are on their way to
 * its worker, one more waits here (a newer one replaces it), the worker keeps one pending, and
 * outputs are skipped while the browser's socket is backed up.
 *
 * Stateless: the workers are learnt from heartbeats, and a session lives on its worker, so any
 * number of gateways may run behind a load balancer. A client whose gateway died reconnects to
 * another and sends `start` with `"resume": "<id from hello>"`; the new gateway re-attaches to the
 * session where it runs (no new warm-up).
 *
 * Protocol additions to the single-machine server's (server → client): `rewarming` (the worker
 * died or drained; the session is being re-created elsewhere, a new warm-up follows), `resumed`
 * (re-attached after a reconnect), and `error` SERVER_FULL carries `retryAfterMs`.
 *
 * @module
 */

import { Hono } from "hono";
import { upgradeWebSocket } from "hono/deno";
import type { WSContext } from "hono/ws";
import { MessageRateLimit, sameOriginWebSocket, servePage } from "../examples/server/protocol.ts";
import { connectNats, maxPayload, type NatsConnection, type Subscription } from "./nats.ts";
import { rankWorkers, workerLoad } from "./placement.ts";
import {
  ClientError,
  decodeJson,
  encodeJson,
  type OpenReply,
  type OpenRequest,
  parseClientText,
  parseFrameHeader,
  parsePrompt,
  parseSettings,
  type StreamSettings,
  SUBJECT,
  type WorkerAdvert,
} from "./protocol.ts";
import { WorkerRegistry } from "./registry.ts";

/** Frames of one client on their way to its worker at most (the worker runs one and holds one). */
export const FRAMES_IN_FLIGHT = 2;

/** Options of {@linkcode createGateway}. */
export interface GatewayOptions {
  /** NATS servers (comma-separated or a list). */
  nats: string | string[];
  /** Gateway id (logs, metrics). @default a random UUID */
  id?: string;
  /** Most clients on this gateway. @default 1000 */
  maxClients?: number;
  /** Largest text message in characters. @default 4096 */
  maxTextBytes?: number;
  /** Largest frame side in pixels. @default 4096 */
  maxFrameSide?: number;
  /** Largest binary frame in bytes (never above the NATS server's max_payload). @default 4 MiB */
  maxFrameBytes?: number;
  /** Messages per second per client (token bucket, one second of burst). @default 120 */
  maxMessagesPerSecond?: number;
  /** Outputs are skipped while a socket has more than this many bytes unsent. @default 2 MiB */
  maxBufferedBytes?: number;
  /** Milliseconds between keep-alives to each session's worker. @default 1000 */
  keepMs?: number;
  /** A worker silent for this many of its heartbeat periods is dead. @default 3 */
  missedHeartbeats?: number;
  /** How long a worker may take to answer an open. @default 3000 */
  openTimeoutMs?: number;
  /** Retry hint sent with SERVER_FULL. @default 5000 */
  retryAfterMs?: number;
  log?: (line: string) => void;
}

/** Metrics of a gateway (`/health`). */
export interface GatewayMetrics {
  ok: boolean;
  id: string;
  uptimeS: number;
  clients: number;
  maxClients: number;
  /** Clients with a session on a worker. */
  placed: number;
  workers: number;
  freeSlots: number;
  refused: number;
  rewarms: number;
  resumes: number;
  framesReceived: number;
  framesRelayed: number;
  framesDropped: number;
  framesOut: number;
  outputsSkipped: number;
  rateLimited: number;
  errors: number;
  /** Frames waiting on this gateway, all clients together. */
  pendingFrames: number;
  /** Most frames waiting for any one client (latest-frame-wins: 0 or 1). */
  maxPendingPerClient: number;
  /** Most frames of any one client on their way to its worker (at most FRAMES_IN_FLIGHT). */
  maxInFlightPerClient: number;
  natsConnected: boolean;
}

/** A running gateway. */
export interface Gateway {
  readonly id: string;
  /** The Hono app (`Deno.serve(gateway.app.fetch)`). */
  readonly app: Hono;
  metrics(): GatewayMetrics;
  /** The workers known from heartbeats. */
  workers(): WorkerAdvert[];
  /** Closes every client socket (their sessions are closed on the workers) and the NATS connection. */
  close(): Promise<void>;
}

interface Link {
  worker: string;
  device: string;
  route: string;
  sub: Subscription;
}

class Client {
  /** The session id: stable across re-placements, the client's key for `resume`. */
  id: string = crypto.randomUUID();
  /** This connection (the session's owner while it is attached here). */
  readonly owner: string = crypto.randomUUID();
  settings: StreamSettings | null = null;
  link: Link | null = null;
  placing = false;
  closed = false;
  inFlight = 0;
  pending: Uint8Array | null = null;
  lastFromWorker = performance.now();
  readonly rate: MessageRateLimit;
  constructor(readonly ws: WSContext, rate: number) {
    this.rate = new MessageRateLimit(rate);
  }
}

/** Starts a gateway: connects to NATS and learns the workers. Serve `gateway.app.fetch`. */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const id = options.id ?? crypto.randomUUID();
  const maxClients = options.maxClients ?? 1000;
  const maxTextBytes = options.maxTextBytes ?? 4096;
  const maxFrameSide = options.maxFrameSide ?? 4096;
  const rate = options.maxMessagesPerSecond ?? 120;
  const maxBuffered = options.maxBufferedBytes ?? 2 * 1024 * 1024;
  const keepMs = options.keepMs ?? 1000;
  const openTimeoutMs = options.openTimeoutMs ?? 3000;
  const retryAfterMs = options.retryAfterMs ?? 5000;
  const log = options.log ?? (() => {});
  const started = performance.now();
  const clients = new Set<Client>();
  const totals = {
    refused: 0,
    rewarms: 0,
    resumes: 0,
    received: 0,
    relayed: 0,
    dropped: 0,
    out: 0,
    skipped: 0,
    rateLimited: 0,
    errors: 0,
  };

  const registry = new WorkerRegistry((wid) => {
    log(`worker ${wid.slice(0, 8)} lost (no heartbeat)`);
    for (const c of clients) if (c.link?.worker === wid) void replace(c, "worker lost");
  }, options.missedHeartbeats ?? 3);

  const nc: NatsConnection = await connectNats(options.nats, `live2diff-gateway ${id}`, {
    onDisconnect: () => registry.disconnected(),
    onReconnect: () => {
      registry.reconnected();
      // Frames and answers of the gap are lost: start counting afresh.
      for (const c of clients) {
        c.inFlight = 0;
        flush(c);
      }
      nc.publish(SUBJECT.heartbeatRequest);
    },
    log,
  });
  const maxFrameBytes = Math.min(options.maxFrameBytes ?? 4 * 1024 * 1024, maxPayload(nc));
  const hbSub = nc.subscribe(SUBJECT.heartbeat, {
    callback: (_err, m) => {
      const advert = decodeJson(m.data) as WorkerAdvert | null;
      if (advert) registry.update(advert);
    },
  });
  nc.publish(SUBJECT.heartbeatRequest);
  await nc.flush();

  const timer = setInterval(() => {
    registry.sweep();
    const now = performance.now();
    for (const c of clients) {
      if (!c.link) continue;
      publish(c.link.route, encodeJson({ type: "keep" }));
      // A lost answer (NATS hiccup) must not stall a client forever: give the window back.
      if (c.inFlight > 0 && now - c.lastFromWorker > Math.max(10_000, keepMs * 10)) {
        c.inFlight = 0;
        flush(c);
      }
    }
  }, Math.min(keepMs, 500));

  const send = (c: Client, message: Record<string, unknown> | string) => {
    if (c.closed || c.ws.readyState !== 1) return;
    try {
      c.ws.send(typeof message === "string" ? message : JSON.stringify(message));
    } catch { /* socket went away */ }
  };
  const fail = (c: Client, code: string, message: string, extra: Record<string, unknown> = {}) => {
    totals.errors++;
    send(c, { type: "error", code, message, ...extra });
  };
  const publish = (route: string, body: Uint8Array) => {
    try {
      nc.publish(SUBJECT.in(route), body);
      return true;
    } catch {
      return false; // disconnected: the frame is lost (latest frame wins), never queued here
    }
  };

  /** Sends the waiting frame when the window allows. */
  function flush(c: Client) {
    if (!c.link || !c.pending || c.inFlight >= FRAMES_IN_FLIGHT) return;
    const frame = c.pending;
    c.pending = null;
    if (publish(c.link.route, frame)) {
      c.inFlight++;
      totals.relayed++;
    }
  }

  function unlink(c: Client, tellWorker: boolean) {
    const link = c.link;
    if (!link) return;
    c.link = null;
    c.inFlight = 0;
    link.sub.unsubscribe();
    if (tellWorker) publish(link.route, encodeJson({ type: "close", owner: c.owner }));
  }

  /** Subscribes to a route's output (before the worker is asked, so nothing is missed). */
  function listen(c: Client, route: string): Subscription {
    return nc.subscribe(SUBJECT.out(route), {
      callback: (_err, m) => {
        if (c.closed || c.link?.route !== route && c.link !== null) return;
        c.lastFromWorker = performance.now();
        onWorkerMessage(c, route, m.data);
      },
    });
  }

  function onWorkerMessage(c: Client, route: string, body: Uint8Array) {
    if (body.byteLength > 0 && body[0] !== 0x7b) { // an output frame
      c.inFlight = Math.max(0, c.inFlight - 1);
      flush(c);
      const raw = c.ws.raw as WebSocket | undefined;
      if (c.closed || c.ws.readyState !== 1) return;
      if (raw && raw.bufferedAmount > maxBuffered) { // slow reader: skip, never queue without bound
        totals.skipped++;
        return;
      }
      try {
        c.ws.send(body as Uint8Array<ArrayBuffer>);
        totals.out++;
      } catch { /* socket went away */ }
      return;
    }
    const m = decodeJson(body);
    if (!m) return;
    switch (m.type) {
      case "dropped":
        c.inFlight = Math.max(0, c.inFlight - 1);
        flush(c);
        return;
      case "ack":
        c.inFlight = Math.max(0, c.inFlight - 1);
        flush(c);
        break;
      case "error":
        if (typeof m.seq === "number") {
          c.inFlight = Math.max(0, c.inFlight - 1);
          flush(c);
        }
        break;
      case "prompt":
        if (c.settings && typeof m.prompt === "string") c.settings.prompt = m.prompt;
        break;
      case "moving":
        if (c.link?.route === route) void replace(c, "worker draining");
        return;
      case "gone":
        if (c.link?.route === route) void replace(c, "worker closed");
        return;
    }
    send(c, new TextDecoder().decode(body));
  }

  /** Places the client's session on the best worker that takes it: "full" when none does. */
  async function place(c: Client, exclude: Set<string>): Promise<"ok" | "full" | "refused"> {
    const settings = c.settings!;
    for (const w of rankWorkers(registry.all(), exclude)) {
      if (c.closed) return "refused";
      const route = crypto.randomUUID();
      const sub = listen(c, route);
      c.link = null;
      let reply: OpenReply;
      const release = registry.reserve(w.id);
      try {
        const req: OpenRequest = { session: c.id, route, settings, owner: c.owner };
        const msg = await nc.request(SUBJECT.open(w.id), encodeJson(req), { timeout: openTimeoutMs });
        reply = decodeJson(msg.data) as OpenReply;
      } catch (e) {
        reply = { ok: false, code: "SERVER_FULL", message: e instanceof Error ? e.message : String(e) };
      } finally {
        release();
      }
      if (reply?.ok && !c.closed) {
        c.link = { worker: w.id, device: reply.device, route, sub };
        c.inFlight = 0;
        c.lastFromWorker = performance.now();
        log(`session ${c.id.slice(0, 8)} placed on ${w.id.slice(0, 8)}/${reply.device}`);
        // A "start" that arrived while placing changed c.settings: the worker must hear it.
        if (c.settings !== settings) publish(route, encodeJson({ ...c.settings, type: "start" }));
        flush(c);
        return "ok";
      }
      sub.unsubscribe();
      if (reply?.ok) publish(route, encodeJson({ type: "close", owner: c.owner })); // the client left meanwhile
      if (reply && !reply.ok && reply.code === "BAD_MESSAGE") {
        fail(c, "BAD_MESSAGE", reply.message);
        return "refused";
      }
      exclude.add(w.id);
    }
    return c.closed ? "refused" : "full";
  }

  function refuseFull(c: Client) {
    totals.refused++;
    const free = registry.all().reduce((a, w) => a + (w.draining ? 0 : workerLoad(w).free), 0);
    const message = registry.all().length === 0
      ? "No worker is available; try again later"
      : `All workers are full (${free} free slots); try again later`;
    fail(c, "SERVER_FULL", message, { retryAfterMs });
    log(`refused session ${c.id.slice(0, 8)}: ${message}`);
  }

  /** Re-creates a session elsewhere after its worker died or drained (a new warm-up). */
  async function replace(c: Client, reason: string) {
    if (c.closed || c.placing || !c.settings) return;
    const old = c.link;
    unlink(c, true);
    totals.rewarms++;
    send(c, { type: "rewarming", reason, id: c.id });
    c.placing = true;
    try {
      if (await place(c, new Set(old ? [old.worker] : [])) === "full") refuseFull(c);
    } finally {
      c.placing = false;
    }
  }

  async function start(c: Client, msg: Record<string, unknown>) {
    const settings = parseSettings(msg);
    c.settings = settings;
    if (c.link) { // the worker re-creates or keeps the stream, as the single-machine server does
      publish(c.link.route, encodeJson({ ...settings, type: "start" }));
      return;
    }
    if (c.placing) return; // the settings above are used when placing finishes
    c.placing = true;
    try {
      const resume = typeof msg.resume === "string" && /^[A-Za-z0-9-]{8,64}$/.test(msg.resume) ? msg.resume : null;
      if (resume && await attach(c, resume)) {
        publish(c.link!.route, encodeJson({ ...c.settings, type: "start" }));
        return;
      }
      if (await place(c, new Set()) === "full") refuseFull(c);
    } finally {
      c.placing = false;
    }
  }

  /** Re-attaches to a running session (its gateway died); false when no worker has it. */
  async function attach(c: Client, sid: string): Promise<boolean> {
    let reply: OpenReply;
    try {
      const msg = await nc.request(SUBJECT.attach(sid), encodeJson({ owner: c.owner }), {
        timeout: openTimeoutMs,
      });
      reply = decodeJson(msg.data) as OpenReply;
    } catch {
      return false; // no responders: the session is gone
    }
    if (!reply?.ok || c.closed) return false;
    c.id = sid;
    c.link = { worker: reply.worker, device: reply.device, route: reply.route, sub: listen(c, reply.route) };
    c.inFlight = 0;
    await nc.flush().catch(() => {});
    totals.resumes++;
    send(c, { type: "resumed", id: sid, worker: reply.worker, device: reply.device });
    log(`session ${sid.slice(0, 8)} resumed on ${reply.worker.slice(0, 8)}`);
    return true;
  }

  function takeToken(c: Client): boolean {
    const verdict = c.rate.take();
    if (verdict === "ok") return true;
    totals.rateLimited++;
    if (verdict === "report") fail(c, "RATE_LIMITED", c.rate.message);
    return false;
  }

  function onText(c: Client, text: string) {
    const m = parseClientText(text, maxTextBytes);
    switch (m.type) {
      case "start":
        void start(c, m).catch((e) => {
          if (e instanceof ClientError) fail(c, e.code, e.message);
          else fail(c, "ENGINE", e instanceof Error ? e.message : String(e));
        });
        return;
      case "prompt": {
        if (!c.settings) throw new ClientError("NOT_STARTED", 'Send "start" first');
        const prompt = parsePrompt(m.prompt);
        c.settings.prompt = prompt; // a re-placed session starts with the latest prompt
        if (c.link) publish(c.link.route, encodeJson({ type: "prompt", prompt }));
        return;
      }
      case "ping":
        send(c, { type: "pong", t: typeof m.t === "number" ? m.t : null });
        return;
      default:
        throw new ClientError("BAD_MESSAGE", `Unknown message type ${JSON.stringify(String(m.type)).slice(0, 40)}`);
    }
  }

  function onBinary(c: Client, bytes: Uint8Array) {
    const { seq } = parseFrameHeader(bytes, maxFrameBytes, maxFrameSide); // its errors carry the seq
    if (!c.settings) throw Object.assign(new ClientError("NOT_STARTED", 'Send "start" before frames'), { seq });
    totals.received++;
    if (c.pending) totals.dropped++; // latest frame wins
    c.pending = bytes;
    flush(c);
  }

  function drop(c: Client) {
    if (c.closed) return;
    c.closed = true;
    c.pending = null;
    clients.delete(c);
    unlink(c, true);
  }

  function metrics(): GatewayMetrics {
    let pending = 0, maxPending = 0, maxInFlight = 0, placed = 0;
    for (const c of clients) {
      const p = c.pending ? 1 : 0;
      pending += p;
      maxPending = Math.max(maxPending, p);
      maxInFlight = Math.max(maxInFlight, c.inFlight);
      if (c.link) placed++;
    }
    const workers = registry.all();
    return {
      ok: !nc.isClosed(),
      id,
      uptimeS: Math.round((performance.now() - started) / 1000),
      clients: clients.size,
      maxClients,
      placed,
      workers: workers.length,
      freeSlots: workers.reduce((a, w) => a + (w.draining ? 0 : workerLoad(w).free), 0),
      refused: totals.refused,
      rewarms: totals.rewarms,
      resumes: totals.resumes,
      framesReceived: totals.received,
      framesRelayed: totals.relayed,
      framesDropped: totals.dropped,
      framesOut: totals.out,
      outputsSkipped: totals.skipped,
      rateLimited: totals.rateLimited,
      errors: totals.errors,
      pendingFrames: pending,
      maxPendingPerClient: maxPending,
      maxInFlightPerClient: maxInFlight,
      natsConnected: !nc.isClosed(),
    };
  }

  const app = new Hono();
  servePage(app); // the single-machine server's page: the same protocol
  app.get("/health", (c) => c.json(metrics()));
  app.get("/metrics", (c) => {
    c.header("content-type", "text/plain; version=0.0.4");
    return c.body(gatewayPrometheus(metrics()));
  });
  app.get(
    "/ws",
    sameOriginWebSocket,
    upgradeWebSocket(() => {
      let client: Client | null = null;
      return {
        onOpen: (_evt, ws) => {
          (ws.raw as WebSocket).binaryType = "arraybuffer";
          if (clients.size >= maxClients) {
            totals.refused++;
            const message = `Gateway full: ${maxClients} clients; try again later or another gateway`;
            ws.send(JSON.stringify({ type: "error", code: "SERVER_FULL", message, retryAfterMs }));
            ws.close(1013, "server full");
            return;
          }
          const c = new Client(ws, rate);
          client = c;
          clients.add(c);
          const w = rankWorkers(registry.all())[0] ?? registry.all()[0];
          send(c, {
            type: "hello",
            id: c.id,
            mjpeg: null, // MJPEG is served by the single-machine server only
            width: w?.width ?? null,
            height: w?.height ?? null,
            device: "cluster",
            synthetic: w?.synthetic ?? null,
            notice: w?.notice ?? null,
            maxFrameBytes,
            maxMessagesPerSecond: rate,
            gateway: id,
          });
        },
        onMessage: (evt) => {
          const c = client;
          if (!c || c.closed) return;
          if (!takeToken(c)) return;
          try {
            const data = evt.data;
            if (typeof data === "string") onText(c, data);
            else if (data instanceof ArrayBuffer) onBinary(c, new Uint8Array(data));
            else throw new ClientError("BAD_MESSAGE", "Unsupported message type");
          } catch (e) {
            if (e instanceof ClientError) {
              // An error about a frame carries its seq, as on the single-machine server: a self-clocked page
              // counts that frame as answered and sends the next one.
              fail(c, e.code, e.message, e.seq !== undefined ? { seq: e.seq } : {});
            } else throw e;
          }
        },
        onClose: () => {
          if (client) drop(client);
        },
        onError: () => {
          if (client) drop(client);
        },
      };
    }),
    (c) => c.json({ error: "UPGRADE_REQUIRED", message: "This endpoint speaks WebSocket" }, 426),
  );

  return {
    id,
    app,
    metrics,
    workers: () => registry.all(),
    async close() {
      clearInterval(timer);
      for (const c of [...clients]) {
        try {
          c.ws.close(1001, "gateway closing");
        } catch { /* already closed */ }
        drop(c);
      }
      hbSub.unsubscribe();
      await nc.drain().catch(() => {});
    },
  };
}

/** Prometheus text of a gateway's metrics. */
function gatewayPrometheus(m: GatewayMetrics): string {
  const lines: [string, number][] = [
    ["live2diff_gateway_clients", m.clients],
    ["live2diff_gateway_max_clients", m.maxClients],
    ["live2diff_gateway_sessions_placed", m.placed],
    ["live2diff_gateway_workers", m.workers],
    ["live2diff_gateway_free_slots", m.freeSlots],
    ["live2diff_gateway_refused_total", m.refused],
    ["live2diff_gateway_rewarms_total", m.rewarms],
    ["live2diff_gateway_resumes_total", m.resumes],
    ["live2diff_gateway_frames_received_total", m.framesReceived],
    ["live2diff_gateway_frames_relayed_total", m.framesRelayed],
    ["live2diff_gateway_frames_dropped_total", m.framesDropped],
    ["live2diff_gateway_frames_out_total", m.framesOut],
    ["live2diff_gateway_outputs_skipped_total", m.outputsSkipped],
    ["live2diff_gateway_rate_limited_total", m.rateLimited],
    ["live2diff_gateway_errors_total", m.errors],
    ["live2diff_gateway_pending_frames", m.pendingFrames],
    ["live2diff_gateway_max_pending_per_client", m.maxPendingPerClient],
    ["live2diff_gateway_max_in_flight_per_client", m.maxInFlightPerClient],
    ["live2diff_gateway_nats_connected", m.natsConnected ? 1 : 0],
  ];
  return lines.map(([k, v]) => `${k} ${v}`).join("\n") + "\n";
}
