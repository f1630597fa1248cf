// The webcam page's side of the WebSocket protocol, without the DOM: what each server message
// means for the stream (may frames flow? what to show? send "start" again?) and what to do when the
// connection drops. app.js does the camera, canvas and socket; this module decides. It serves the
// single-machine server and the cluster gateway alike, and is tested in Deno
// (tests/page_session_test.ts, tests/cluster_relay_test.ts).
//
// Cluster additions it handles: `rewarming` (the worker was lost or drained: the session is being
// re-created elsewhere; frames wait for the new `ready`), `resumed` (a reconnect re-attached to the
// running session: no new warm-up) and SERVER_FULL with `retryAfterMs` (send "start" again later).

/** Close codes after which reconnecting would not help: normal, engine unavailable, server full, idle. */
const FINAL_CLOSE_CODES = new Set([1000, 1011, 1013, 4000]);
/** Reconnect attempts in a row before the page gives up (reset by every `ready`). */
export const MAX_RECONNECTS = 5;

/**
 * A fresh page session.
 * @returns {{ id: string | null, resumeId: string | null, streaming: boolean, seq: number, acked: number,
 *   reconnects: number, width: number, height: number, maxFrameBytes: number }}
 */
export function createPageSession() {
  return {
    id: null, // the session's id (hello, or resumed): the key to resume it from a new connection
    resumeId: null, // set while a reconnect tries to resume `id`
    streaming: false, // frames may be sent (a stream is ready)
    seq: 0, // the last frame sent
    acked: 0, // the last frame the server is done with (consumed, output or refused)
    reconnects: 0,
    width: 64,
    height: 64,
    maxFrameBytes: Infinity,
  };
}

/**
 * Self-clocked capture: a new frame only when the stream is ready and the previous frame was answered.
 * @param {ReturnType<typeof createPageSession>} s
 */
export function mayCapture(s) {
  return s.streaming && s.seq - s.acked < 1;
}

/**
 * The "start" message for `settings`; after a reconnect it asks to resume the running session
 * (a gateway re-attaches to it; the single-machine server ignores `resume` and starts afresh).
 * @param {ReturnType<typeof createPageSession>} s
 * @param {Record<string, unknown>} settings
 */
export function startMessage(s, settings) {
  return s.resumeId ? { ...settings, type: "start", resume: s.resumeId } : { ...settings, type: "start" };
}

/**
 * Applies a server JSON message to the session and says what the page does: show `status` and/or
 * `error`, send "start" now (`sendStart`) or after `retryStartMs`.
 * @param {ReturnType<typeof createPageSession>} s
 * @param {Record<string, any>} msg
 * @returns {{ status?: string, error?: string, sendStart?: boolean, retryStartMs?: number }}
 */
export function onServerMessage(s, msg) {
  switch (msg.type) {
    case "hello":
      s.id = msg.id; // this connection's session, unless a resume below succeeds
      s.width = msg.width ?? s.width;
      s.height = msg.height ?? s.height;
      s.maxFrameBytes = msg.maxFrameBytes ?? Infinity;
      return { status: s.resumeId ? "resuming" : "starting", sendStart: true };
    case "resumed":
      s.id = msg.id;
      return { status: "resumed: the stream goes on" };
    case "ready":
      // A new, re-created or resumed stream: frames sent before it were used or lost with the old
      // worker, and none of them will be answered, so the next frame goes out now.
      s.streaming = true;
      s.acked = s.seq;
      s.resumeId = null;
      s.reconnects = 0;
      return { status: `warming up (${(msg.warmup ?? 0) + (msg.latency ?? 0)} frames)` };
    case "rewarming":
      s.streaming = false;
      return { status: `rewarming (${msg.reason ?? "worker lost"}): the stream moves to another worker` };
    case "ack":
      s.acked = Math.max(s.acked, msg.seq);
      return msg.warmup > 0 ? { status: `warming up (${msg.warmup} frames)` } : {};
    case "prompt":
      return { status: `prompt: ${msg.prompt}` };
    case "error": {
      // A refused frame counts as answered: the self-clocked capture goes on with the next one.
      if (typeof msg.seq === "number") s.acked = Math.max(s.acked, msg.seq);
      const out = { error: `${msg.code}: ${msg.message}` };
      if (msg.code === "SERVER_FULL" && typeof msg.retryAfterMs === "number") {
        // No worker took the session (at start or after a rewarm): ask again later, if still open.
        s.streaming = false;
        return {
          ...out,
          status: `waiting for a free worker (${Math.round(msg.retryAfterMs / 1000)} s)`,
          retryStartMs: msg.retryAfterMs,
        };
      }
      return out;
    }
    default:
      return {};
  }
}

/**
 * The connection closed: reconnect (after `reconnectMs`, resuming the session) or stop. A lost
 * connection (a gateway died, 1006) or a closing one (1001) is retried; a refusal or an idle
 * close is final.
 * @param {ReturnType<typeof createPageSession>} s
 * @param {number} code
 * @returns {{ reconnectMs: number } | null}
 */
export function onConnectionClosed(s, code) {
  s.streaming = false;
  if (FINAL_CLOSE_CODES.has(code) || s.id === null || s.reconnects >= MAX_RECONNECTS) return null;
  s.reconnects++;
  s.resumeId = s.id;
  return { reconnectMs: 250 * 2 ** (s.reconnects - 1) }; // 250 ms, 500 ms, 1 s, ...
}
