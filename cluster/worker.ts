/**
 * A worker: hosts an engine per device ({@linkcode DevicePool}), advertises itself and its live
 * capacity on NATS (`l2d.hb` heartbeats: free slots per device, FPS, queue depth), accepts session
 * requests from gateways, runs the streams, and drains on request (SIGTERM in `worker_main.ts`):
 * no new sessions, running ones get `drainMs` to finish, then are told to move.
 *
 * Subjects and messages: see `protocol.ts`.
 *
 * @module
 */

import type { DevicePool } from "./devices.ts";
import { connectNats, maxPayload, type Msg, type NatsConnection, type Subscription } from "./nats.ts";
import {
  decodeJson,
  encodeJson,
  type OpenReply,
  type OpenRequest,
  parseSettings,
  SUBJECT,
  type WorkerAdvert,
} from "./protocol.ts";
import { WorkerSession } from "./worker_session.ts";

/** Options of {@linkcode createWorker}. */
export interface WorkerOptions {
  /** NATS servers (comma-separated or a list). */
  nats: string | string[];
  /** The devices with their engines. */
  pool: DevicePool;
  /** Stream width and height of every session. */
  width: number;
  height: number;
  /** Worker id (unique). @default a random UUID */
  id?: string;
  /** Host name advertised (for operators). @default Deno.hostname() */
  host?: string;
  /** Milliseconds between heartbeats. @default 1000 */
  heartbeatMs?: number;
  /** A session whose gateway stayed silent this long is closed (its gateway died). @default 10000 */
  sessionIdleMs?: number;
  /** How long running sessions may go on after a drain starts before they are told to move. @default 30000 */
  drainMs?: number;
  /** Largest frame side in pixels. @default 4096 */
  maxFrameSide?: number;
  /** JPEG quality of JPEG outputs. @default 80 */
  jpegQuality?: number;
  log?: (line: string) => void;
}

/** Metrics of a worker (`/health`). */
export interface WorkerMetrics {
  ok: boolean;
  id: string;
  draining: boolean;
  sessions: number;
  devices: WorkerAdvert["devices"];
  framesReceived: number;
  framesProcessed: number;
  framesDropped: number;
  framesOut: number;
  sessionsOpened: number;
  sessionsRefused: number;
  sessionsIdleClosed: number;
  natsConnected: boolean;
}

/** A running worker. */
export interface Worker {
  readonly id: string;
  /** Current metrics. */
  metrics(): WorkerMetrics;
  /** `/health` (JSON) and `/metrics` (Prometheus text). */
  fetch(req: Request): Response;
  /** Stops taking sessions, waits up to `drainMs` for running ones, moves the rest, then closes. */
  drain(): Promise<void>;
  /** Closes at once (sessions end, NATS connection closed; the engines are left open). */
  close(): Promise<void>;
}

/** Starts a worker: connects to NATS, subscribes and starts heartbeating. */
export async function createWorker(options: WorkerOptions): Promise<Worker> {
  const id = options.id ?? crypto.randomUUID();
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const idleMs = options.sessionIdleMs ?? 10_000;
  const drainMs = options.drainMs ?? 30_000;
  const maxFrameSide = options.maxFrameSide ?? 4096;
  const log = options.log ?? (() => {});
  const pool = options.pool;
  const sessions = new Map<string, { session: WorkerSession; subs: Subscription[] }>();
  const totals = { opened: 0, refused: 0, idleClosed: 0 };
  const finished = { received: 0, processed: 0, dropped: 0, outputs: 0 };
  let draining = false;
  let closed = false;

  const nc: NatsConnection = await connectNats(options.nats, `live2diff-worker ${id}`, {
    onReconnect: () => {
      // A NATS outage silences gateways too: do not mistake it for their death.
      for (const { session } of sessions.values()) session.lastSeen = performance.now();
      heartbeat();
    },
    log,
  });
  const maxFrameBytes = maxPayload(nc);

  const advert = (): WorkerAdvert => ({
    id,
    host: options.host ?? Deno.hostname(),
    draining,
    width: options.width,
    height: options.height,
    synthetic: pool.devices.some((d) => d.host.synthetic),
    notice: pool.devices.find((d) => d.host.notice)?.host.notice ?? null,
    devices: pool.devices.map((d) => d.advert()),
    heartbeatMs,
  });
  const heartbeat = () => {
    if (closed || nc.isClosed()) return;
    try {
      nc.publish(SUBJECT.heartbeat, encodeJson(advert()));
    } catch { /* disconnected: the next beat goes out after the reconnect */ }
  };

  const endSession = (sid: string, notice?: Record<string, unknown>) => {
    const entry = sessions.get(sid);
    if (!entry) return;
    sessions.delete(sid);
    const { session, subs } = entry;
    if (notice) publishTo(session.route, notice);
    for (const s of subs) s.unsubscribe();
    session.close();
    pool.release(session.device);
    finished.received += session.stats.received;
    finished.processed += session.stats.processed;
    finished.dropped += session.stats.dropped;
    finished.outputs += session.stats.outputs;
    heartbeat();
  };

  const publishTo = (route: string, message: Record<string, unknown> | Uint8Array) => {
    try {
      nc.publish(SUBJECT.out(route), message instanceof Uint8Array ? message : encodeJson(message));
    } catch { /* disconnected or closed: latest frame wins, nothing is queued */ }
  };

  const reply = (msg: Msg, body: OpenReply) => {
    try {
      msg.respond(encodeJson(body));
    } catch { /* requester gone */ }
  };

  const onOpen = (msg: Msg) => {
    const req = decodeJson(msg.data) as Partial<OpenRequest> | null;
    if (
      !req || typeof req.session !== "string" || typeof req.route !== "string" || !req.settings ||
      typeof req.owner !== "string"
    ) {
      return reply(msg, { ok: false, code: "BAD_MESSAGE", message: "open needs session, route, settings and owner" });
    }
    if (!/^[A-Za-z0-9-]{8,64}$/.test(req.session) || !/^[A-Za-z0-9-]{8,64}$/.test(req.route)) {
      return reply(msg, { ok: false, code: "BAD_MESSAGE", message: "session and route must be ids" });
    }
    let settings;
    try {
      settings = parseSettings(req.settings as unknown as Record<string, unknown>);
    } catch (e) {
      return reply(msg, { ok: false, code: "BAD_MESSAGE", message: e instanceof Error ? e.message : String(e) });
    }
    if (draining || closed) return reply(msg, { ok: false, code: "DRAINING", message: `worker ${id} is draining` });
    if (sessions.has(req.session)) endSession(req.session); // re-placed onto the same worker: start over
    const device = pool.acquire();
    if (!device) {
      totals.refused++;
      return reply(msg, { ok: false, code: "SERVER_FULL", message: `worker ${id} has no free stream slot` });
    }
    const route = req.route, sid = req.session;
    const session = new WorkerSession(sid, route, device, settings, req.owner, {
      workerId: id,
      width: options.width,
      height: options.height,
      maxFrameBytes,
      maxFrameSide,
      jpegQuality: options.jpegQuality ?? 80,
      send: (m) => publishTo(route, m),
      log,
    });
    const subs = [
      nc.subscribe(SUBJECT.in(route), {
        callback: (_err, m) => {
          if (!session.onMessage(m.data)) endSession(sid);
        },
      }),
      nc.subscribe(SUBJECT.attach(sid), {
        callback: (_err, m) => {
          session.lastSeen = performance.now();
          const owner = decodeJson(m.data)?.owner;
          if (typeof owner === "string") session.owner = owner;
          reply(m, { ok: true, worker: id, device: device.name, route, width: options.width, height: options.height });
        },
      }),
    ];
    sessions.set(sid, { session, subs });
    totals.opened++;
    log(`session ${sid.slice(0, 8)} opened on ${device.name} (${sessions.size} sessions)`);
    // Subscriptions must reach the server before the gateway sends frames on the route.
    nc.flush().then(
      () =>
        reply(msg, { ok: true, worker: id, device: device.name, route, width: options.width, height: options.height }),
      () => endSession(sid),
    );
    heartbeat();
    void session.pump();
  };

  const subs: Subscription[] = [
    nc.subscribe(SUBJECT.open(id), { callback: (_err, m) => onOpen(m) }),
    nc.subscribe(SUBJECT.heartbeatRequest, { callback: () => heartbeat() }),
  ];
  const beat = setInterval(heartbeat, heartbeatMs);
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [sid, { session }] of sessions) {
      if (now - session.lastSeen > idleMs) {
        totals.idleClosed++;
        log(`session ${sid.slice(0, 8)}: no word from its gateway for ${idleMs} ms, closed`);
        endSession(sid);
      }
    }
  }, Math.min(1000, idleMs / 2));
  await nc.flush();
  heartbeat();

  function metrics(): WorkerMetrics {
    const live = { received: 0, processed: 0, dropped: 0, outputs: 0 };
    for (const { session } of sessions.values()) {
      live.received += session.stats.received;
      live.processed += session.stats.processed;
      live.dropped += session.stats.dropped;
      live.outputs += session.stats.outputs;
    }
    return {
      ok: !closed,
      id,
      draining,
      sessions: sessions.size,
      devices: pool.devices.map((d) => d.advert()),
      framesReceived: finished.received + live.received,
      framesProcessed: finished.processed + live.processed,
      framesDropped: finished.dropped + live.dropped,
      framesOut: finished.outputs + live.outputs,
      sessionsOpened: totals.opened,
      sessionsRefused: totals.refused,
      sessionsIdleClosed: totals.idleClosed,
      natsConnected: !nc.isClosed() && nc.info !== undefined,
    };
  }

  async function close() {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    clearInterval(sweep);
    for (const sid of [...sessions.keys()]) endSession(sid, { type: "gone", message: `worker ${id} closed` });
    for (const s of subs) s.unsubscribe();
    await nc.drain().catch(() => {});
  }

  return {
    id,
    metrics,
    fetch(req: Request): Response {
      const path = new URL(req.url).pathname;
      const m = metrics();
      if (path === "/health") return Response.json(m, { status: m.ok ? 200 : 503 });
      if (path === "/metrics") {
        return new Response(workerPrometheus(m), { headers: { "content-type": "text/plain; version=0.0.4" } });
      }
      return Response.json({ error: "NOT_FOUND", message: "Try /health or /metrics" }, { status: 404 });
    },
    async drain() {
      if (draining || closed) return;
      draining = true;
      heartbeat();
      log(`draining: ${sessions.size} sessions may run ${drainMs} ms more`);
      const until = performance.now() + drainMs;
      while (sessions.size > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 100));
      for (const sid of [...sessions.keys()]) endSession(sid, { type: "moving" });
      await close();
    },
    close,
  };
}

/** Prometheus text of a worker's metrics (one line per device and figure). */
function workerPrometheus(m: WorkerMetrics): string {
  const lines = [
    `live2diff_worker_draining ${m.draining ? 1 : 0}`,
    `live2diff_worker_sessions ${m.sessions}`,
    `live2diff_worker_frames_received_total ${m.framesReceived}`,
    `live2diff_worker_frames_processed_total ${m.framesProcessed}`,
    `live2diff_worker_frames_dropped_total ${m.framesDropped}`,
    `live2diff_worker_frames_out_total ${m.framesOut}`,
    `live2diff_worker_sessions_opened_total ${m.sessionsOpened}`,
    `live2diff_worker_sessions_refused_total ${m.sessionsRefused}`,
    `live2diff_worker_sessions_idle_closed_total ${m.sessionsIdleClosed}`,
    `live2diff_worker_nats_connected ${m.natsConnected ? 1 : 0}`,
  ];
  for (const d of m.devices) {
    const l = `{device="${d.name}"}`;
    lines.push(
      `live2diff_device_slots${l} ${d.slots}`,
      `live2diff_device_slots_used${l} ${d.used}`,
      `live2diff_device_fps${l} ${d.fps}`,
      `live2diff_device_queue${l} ${d.queue}`,
      `live2diff_device_bytes_in_use${l} ${d.bytesInUse}`,
    );
  }
  return lines.join("\n") + "\n";
}
