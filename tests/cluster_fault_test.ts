/**
 * The cluster with real parts and real faults: a 3-node `nats-server` cluster, 3 worker processes
 * on the tiny CPU default engine (64x64), 2 gateway processes and 12 WebSocket clients streaming.
 * Mid-stream it SIGKILLs a worker (its sessions are re-created on the others and the clients are
 * told "rewarming"), a gateway (its clients reconnect to the other one and resume their sessions
 * without a new warm-up) and a NATS node (a brief stall, no session lost). Throughout, every
 * output a client gets must come from its own frames (its own seq range). Ignored with an install
 * hint where `nats-server` is missing.
 */

import assert from "node:assert/strict";
import { KIND } from "../cluster/protocol.ts";
import {
  type Child,
  hasNatsServer,
  NATS_HINT,
  spawnGateway,
  spawnWorker,
  startNats,
} from "./_fixtures/cluster_harness.ts";
import { decodeFrame, encodeFrame } from "./_fixtures/examples_ws_client.ts";

const natsPresent = await hasNatsServer();
if (!natsPresent) console.warn(`cluster fault test ignored: ${NATS_HINT}`);

const SIZE = 64;
const SEQ_SPAN = 100_000;
type Json = Record<string, unknown> & { type: string };

/** A streaming client that reconnects (to the next gateway) and resumes when its socket drops. */
class StreamingClient {
  readonly events: { t: number; json?: Json; frame?: { seq: number; ack: number; bytes: number } }[] = [];
  readonly foreign: string[] = [];
  ws!: WebSocket;
  session: string | null = null;
  n = 0;
  /** When the last frame was sent and when its answer (ack, output or error) came. */
  sentAt = 0;
  answered = 0;
  gatewayIndex: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;
  readonly #payload: Uint8Array;

  constructor(readonly index: number, readonly gateways: () => string[], gatewayIndex: number) {
    this.gatewayIndex = gatewayIndex;
    this.#payload = new Uint8Array(SIZE * SIZE * 3).fill(20 + index * 15);
    this.#connect(null);
    this.#timer = setInterval(() => this.#sendFrame(), 50);
  }

  #connect(resume: string | null) {
    const url = this.gateways()[this.gatewayIndex]!;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          type: "start",
          prompt: `client ${this.index}`,
          steps: 1,
          strength: 0.5,
          format: "raw",
          ...(resume ? { resume } : {}),
        }),
      );
    };
    ws.onmessage = (e) => {
      const t = performance.now();
      if (typeof e.data === "string") {
        const json = JSON.parse(e.data) as Json;
        if (json.type === "hello" && !this.session) this.session = String(json.id);
        if (json.type === "resumed") this.session = String(json.id);
        if (json.seq === this.index * SEQ_SPAN + this.n) this.answered = t;
        this.events.push({ t, json });
        return;
      }
      const f = decodeFrame(e.data as ArrayBuffer);
      const lo = this.index * SEQ_SPAN, hi = lo + SEQ_SPAN;
      if (f.seq < lo || f.seq >= hi || f.ack < lo || f.ack >= hi || f.kind !== KIND.RGB) {
        this.foreign.push(`client ${this.index} got seq ${f.seq}/ack ${f.ack} kind ${f.kind}`);
      }
      if (f.ack === this.index * SEQ_SPAN + this.n) this.answered = t;
      this.events.push({ t, frame: { seq: f.seq, ack: f.ack, bytes: f.payload.byteLength } });
    };
    ws.onclose = () => {
      if (this.#stopped) return;
      // The gateway went away: reconnect to the other one and resume the session.
      this.gatewayIndex = (this.gatewayIndex + 1) % this.gateways().length;
      setTimeout(() => this.#connect(this.session), 100);
    };
  }

  /**
   * Streams paced by the answers: the next frame 2 s after the last one was answered (or 3 s
   * after it was sent, when a fault lost it). The CPU engine serves ~3 frames/s in all: 12 streams
   * pushing flat out would keep the 2 test cores busy and slow the warm-ups the test waits for.
   */
  #sendFrame() {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    const waiting = this.answered < this.sentAt;
    if (waiting ? now - this.sentAt < 3000 : now - this.answered < 2000) return;
    this.sentAt = now;
    this.n++;
    try {
      this.ws.send(encodeFrame(KIND.RGB, SIZE, SIZE, this.index * SEQ_SPAN + this.n, this.#payload));
    } catch { /* closing */ }
  }

  /** Outputs received after time `t`. */
  framesAfter(t: number): number {
    return this.events.filter((e) => e.frame && e.t > t).length;
  }

  /** JSON messages of a type received after time `t`. */
  messagesAfter(type: string, t: number): Json[] {
    return this.events.filter((e) => e.json?.type === type && e.t > t).map((e) => e.json!);
  }

  /** The first output after time `t` (ms since time origin), or null. */
  firstFrameAfter(t: number): number | null {
    return this.events.find((e) => e.frame && e.t > t)?.t ?? null;
  }

  stop() {
    this.#stopped = true;
    clearInterval(this.#timer);
    try {
      this.ws.close();
    } catch { /* already closed */ }
  }
}

async function until(pred: () => boolean, what: string, ms: number, diag: () => string) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${diag()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "cluster faults: 3 workers, 2 gateways, 3 NATS nodes, 12 clients; kill a worker, a gateway and a NATS node",
  ignore: !natsPresent,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const nats = await startNats(3);
    const children: Child[] = [];
    const clients: StreamingClient[] = [];
    const diag = () =>
      [
        ...children.map((c) => c.tail(12)),
        ...clients.map((c) =>
          `client ${c.index}: gw ${c.gatewayIndex}, frames ${c.events.filter((e) => e.frame).length}, ` +
          `last json ${JSON.stringify(c.events.filter((e) => e.json).slice(-2).map((e) => e.json))}`
        ),
      ].join("\n");
    try {
      const natsArg = nats.urls.join(",");
      const workers = await Promise.all(
        ["w1", "w2", "w3"].map((id) =>
          spawnWorker(id, [
            "--nats",
            natsArg,
            "--devices",
            "cpu",
            "--slots",
            "6",
            "--threads",
            "1",
            "--size",
            String(SIZE),
            "--id",
            id,
            "--heartbeat-ms",
            "500",
            "--idle-ms",
            "5000",
          ])
        ),
      );
      children.push(...workers);
      const gateways = await Promise.all(
        ["g1", "g2"].map((id) => spawnGateway(id, ["--nats", natsArg, "--keep-ms", "300", "--id", id])),
      );
      children.push(...gateways.map((g) => g.child));
      const urls = gateways.map((g) => `ws://127.0.0.1:${g.port}/ws`);
      await new Promise((r) => setTimeout(r, 700)); // both gateways hear every worker

      // 12 clients, 6 per gateway, all streaming; wait until every one gets outputs.
      for (let i = 0; i < 12; i++) {
        clients.push(new StreamingClient(i, () => urls, i % 2));
        await new Promise((r) => setTimeout(r, 100)); // users arrive one by one, not in the same millisecond
      }
      const t0 = performance.now();
      await until(() => clients.every((c) => c.framesAfter(0) > 0), "every client's first output", 300_000, diag);
      const ready = clients.map((c) => c.messagesAfter("ready", 0)[0]!);
      const perWorker = new Map<string, number>();
      for (const r of ready) perWorker.set(String(r.worker), (perWorker.get(String(r.worker)) ?? 0) + 1);
      // Two gateways place independently (each learns the other's placements from the workers'
      // heartbeats), so the spread is even up to the sessions placed at the same moment.
      const counts = [...perWorker.values()].sort();
      assert.equal(counts.length, 3, "every worker got sessions");
      assert.ok(counts[0]! >= 3 && counts[2]! <= 5, `12 sessions spread evenly over 3 workers: ${counts}`);
      console.log(`  first outputs of 12 clients after ${((performance.now() - t0) / 1000).toFixed(1)} s`);

      // A worker dies: its clients are told "rewarming" and get frames again from the others.
      const victim = ready[0]!.worker as string;
      const moved = clients.filter((_c, i) => ready[i]!.worker === victim);
      const tKill = performance.now();
      workers.find((w) => w.name === victim)!.kill("SIGKILL");
      await until(
        () =>
          moved.every((c) =>
            c.messagesAfter("rewarming", tKill).length > 0 && c.messagesAfter("ready", tKill).length > 0 &&
            c.framesAfter(tKill) > 0
          ),
        "the moved clients' outputs after re-warm-up",
        240_000,
        diag,
      );
      for (const c of moved) assert.notEqual(c.messagesAfter("ready", tKill)[0]!.worker, victim);
      const recover = moved.map((c) => c.firstFrameAfter(tKill)! - tKill).sort((a, b) => a - b);
      console.log(
        `  worker SIGKILL -> first frame after re-warm-up: min ${(recover[0]! / 1000).toFixed(1)} s, ` +
          `max ${(recover.at(-1)! / 1000).toFixed(1)} s (${moved.length} sessions, tiny CPU engine, 2 workers left)`,
      );
      const stayed = clients.filter((c) => !moved.includes(c));
      assert.ok(stayed.every((c) => c.messagesAfter("rewarming", 0).length === 0), "other sessions were left alone");

      // A gateway dies: its clients reconnect to the other and resume (no new warm-up).
      const tGw = performance.now();
      gateways[0]!.child.kill("SIGKILL");
      const onG1 = clients.filter((c) => c.gatewayIndex === 0);
      await until(
        () => onG1.every((c) => c.messagesAfter("resumed", tGw).length > 0 && c.framesAfter(tGw) > 0),
        "resumed sessions' outputs through the other gateway",
        60_000,
        diag,
      );
      for (const c of onG1) {
        assert.equal(c.messagesAfter("rewarming", tGw).length, 0, `client ${c.index} resumed without re-warm-up`);
      }
      const resumedAt = Math.max(
        ...onG1.map((c) =>
          c.messagesAfter("resumed", tGw).length && c.events.find((e) => e.json?.type === "resumed" && e.t > tGw)!.t
        ),
      );
      console.log(
        `  gateway SIGKILL -> ${onG1.length} clients resumed on the other gateway after ` +
          `${((resumedAt - tGw) / 1000).toFixed(1)} s, streaming again after ${
            ((performance.now() - tGw) / 1000).toFixed(1)
          } s`,
      );

      // A NATS node dies: a brief stall, every client streams on, nothing re-placed.
      const tNats = performance.now();
      nats.nodes[0]!.kill("SIGKILL");
      await until(
        () => clients.every((c) => c.framesAfter(tNats) > 0),
        "every client's output after the NATS node loss",
        60_000,
        diag,
      );
      assert.ok(clients.every((c) => c.messagesAfter("rewarming", tNats).length === 0), "no session re-placed");
      console.log(
        `  NATS node SIGKILL -> every client streaming again after ${
          ((performance.now() - tNats) / 1000).toFixed(1)
        } s`,
      );

      const foreign = clients.flatMap((c) => c.foreign);
      assert.deepEqual(foreign, [], "no client ever got another client's frame");
      for (const c of clients) {
        for (const e of c.events) if (e.frame) assert.equal(e.frame.bytes, SIZE * SIZE * 3);
        const errors = c.events.filter((e) => e.json?.type === "error").map((e) => e.json);
        assert.deepEqual(errors, [], `client ${c.index} got no error`);
      }
    } finally {
      for (const c of clients) c.stop();
      for (const c of children) await c.stop();
      await nats.stop();
    }
  },
});
