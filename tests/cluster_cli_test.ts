/**
 * The cluster's command lines (`deno task worker`, `deno task gateway`) as processes against a real
 * nats-server, on the echo stand-in engine: a worker's `/metrics`, and SIGTERM draining a worker
 * (its session moves to the other worker, the client told "rewarming", the process exits 0).
 * Ignored with an install hint where `nats-server` is missing.
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
import { encodeFrame, TestClient } from "./_fixtures/examples_ws_client.ts";

const natsPresent = await hasNatsServer();
if (!natsPresent) console.warn(`cluster CLI test ignored: ${NATS_HINT}`);

Deno.test({
  name: "cluster CLI: worker metrics, and SIGTERM drains a worker onto the other one",
  ignore: !natsPresent,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const nats = await startNats(1);
    const children: Child[] = [];
    try {
      const args = (id: string) => [
        "--nats",
        nats.urls[0]!,
        "--engine",
        "echo",
        "--devices",
        "cpu,cpu",
        "--slots",
        "2",
        "--size",
        "64",
        "--id",
        id,
        "--heartbeat-ms",
        "300",
        "--drain-s",
        "1",
        "--port",
        "0",
      ];
      const workers = await Promise.all(["w1", "w2"].map((id) => spawnWorker(id, args(id))));
      children.push(...workers);
      const gw = await spawnGateway("g1", ["--nats", nats.urls[0]!, "--keep-ms", "300"]);
      children.push(gw.child);

      const metricsPort = Number((await workers[0]!.waitFor(/metrics on http:\/\/[^:]+:(\d+)\/metrics/))[1]);
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(text, /^live2diff_device_slots\{device="echo:0"\} 2$/m);
      assert.match(text, /^live2diff_device_slots\{device="echo:1"\} 2$/m);
      assert.match(text, /^live2diff_worker_draining 0$/m);

      const deadline = Date.now() + 10_000;
      while ((await (await fetch(`http://127.0.0.1:${gw.port}/health`)).json()).workers < 2) {
        if (Date.now() > deadline) throw new Error(`the gateway does not see 2 workers\n${gw.child.tail()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const c = new TestClient(`ws://127.0.0.1:${gw.port}/ws`);
      await c.message("hello");
      c.sendJson({ type: "start", prompt: "p" });
      const first = await c.message("ready");
      const victim = workers.find((w) => w.name === first.worker)!;
      victim.kill("SIGTERM");
      const status = await victim.status;
      assert.equal(status.code, 0, `a drained worker exits cleanly\n${victim.tail()}`);
      await c.message("rewarming");
      await c.until(() => c.json.filter((m) => m.type === "ready").length === 2, "ready on the other worker");
      assert.notEqual(c.json.filter((m) => m.type === "ready")[1]!.worker, first.worker);
      c.ws.send(encodeFrame(KIND.RGB, 64, 64, 1, new Uint8Array(64 * 64 * 3).fill(9)));
      await c.until(() => c.frames.length === 1, "an output from the other worker");
      const g = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
      assert.match(g, /^live2diff_gateway_rewarms_total 1$/m);
      await c.close();
    } finally {
      for (const c of children) await c.stop();
      await nats.stop();
    }
  },
});
