/**
 * The webcam page's protocol decisions (examples/server/public/page_session.js) message by
 * message: a rewarm stops the frames and the next `ready` restarts them (the frame lost with the
 * old worker is never answered), SERVER_FULL with a retry hint asks again later, and a lost
 * connection reconnects and resumes the session. The same module against a real gateway:
 * tests/cluster_relay_test.ts.
 */

import assert from "node:assert/strict";
import {
  createPageSession,
  MAX_RECONNECTS,
  mayCapture,
  onConnectionClosed,
  onServerMessage,
  startMessage,
} from "../examples/server/public/page_session.js";

const SETTINGS = { prompt: "x", steps: 2, strength: 0.5, seed: 0, format: "raw" };
const READY = { type: "ready", warmup: 8, latency: 1 };

Deno.test("page session: a rewarm pauses the frames and the new worker's ready resumes them", () => {
  const s = createPageSession();
  assert.deepEqual(onServerMessage(s, { type: "hello", id: "sess-1", width: 64, height: 64 }), {
    status: "starting",
    sendStart: true,
  });
  assert.deepEqual(startMessage(s, SETTINGS), { ...SETTINGS, type: "start" }, "no resume on a first connection");
  assert.equal(mayCapture(s), false, "no frames before ready");
  onServerMessage(s, READY);
  assert.equal(mayCapture(s), true);
  s.seq = 1; // frame 1 sent
  assert.equal(mayCapture(s), false, "one frame in flight");
  onServerMessage(s, { type: "ack", seq: 1, warmup: 7 });
  s.seq = 2; // frame 2 sent, then its worker dies
  const rewarm = onServerMessage(s, { type: "rewarming", reason: "worker lost", id: "sess-1" });
  assert.match(rewarm.status!, /rewarming \(worker lost\)/);
  assert.equal(mayCapture(s), false, "no frames while the session moves");
  onServerMessage(s, { ...READY, worker: "w2" });
  assert.equal(mayCapture(s), true, "frame 2 was lost with the old worker: the next one goes out without its answer");
});

Deno.test("page session: SERVER_FULL with a retry hint asks again later; a refused frame counts as answered", () => {
  const s = createPageSession();
  onServerMessage(s, { type: "hello", id: "a" });
  onServerMessage(s, READY);
  s.seq = 3;
  assert.deepEqual(onServerMessage(s, { type: "error", code: "BAD_FRAME", message: "m", seq: 3 }), {
    error: "BAD_FRAME: m",
  });
  assert.equal(mayCapture(s), true);
  onServerMessage(s, { type: "rewarming", reason: "worker lost" });
  const full = onServerMessage(s, {
    type: "error",
    code: "SERVER_FULL",
    message: "All workers are full",
    retryAfterMs: 1500,
  });
  assert.equal(full.retryStartMs, 1500);
  assert.equal(mayCapture(s), false);
  // Without a retry hint (the single-machine server, which closes the socket) nothing is retried.
  assert.equal(onServerMessage(s, { type: "error", code: "SERVER_FULL", message: "full" }).retryStartMs, undefined);
});

Deno.test("page session: a lost connection reconnects and resumes; refusals and idle closes are final", () => {
  const s = createPageSession();
  onServerMessage(s, { type: "hello", id: "sess-1" });
  onServerMessage(s, READY);
  s.seq = 5;
  assert.deepEqual(onConnectionClosed(s, 1006), { reconnectMs: 250 }, "gateway died: reconnect");
  assert.equal(mayCapture(s), false);
  onServerMessage(s, { type: "hello", id: "conn-2" }); // the new gateway's own id for this connection
  assert.deepEqual(startMessage(s, SETTINGS), { ...SETTINGS, type: "start", resume: "sess-1" });
  onServerMessage(s, { type: "resumed", id: "sess-1" });
  onServerMessage(s, READY);
  assert.equal(s.id, "sess-1", "the resumed session's id is kept for the next reconnect");
  assert.equal(mayCapture(s), true, "frame 5 was lost with the old gateway: streaming goes on");
  assert.deepEqual(startMessage(s, SETTINGS), { ...SETTINGS, type: "start" }, "later starts do not resume");

  // A resume that finds no session (it ended meanwhile): the gateway starts a new one under the hello id.
  assert.ok(onConnectionClosed(s, 1001));
  onServerMessage(s, { type: "hello", id: "conn-3" });
  onServerMessage(s, READY);
  assert.equal(s.id, "conn-3");

  for (const code of [1000, 1011, 1013, 4000]) assert.equal(onConnectionClosed(s, code), null, `close ${code}`);
  const delays: number[] = [];
  for (let i = 0; i < MAX_RECONNECTS + 2; i++) {
    const r = onConnectionClosed(s, 1006);
    if (r) delays.push(r.reconnectMs);
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000], "bounded attempts with backoff, reset by ready");
});
