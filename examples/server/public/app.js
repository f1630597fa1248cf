// live2diff webcam page: captures the camera at the stream size, streams frames over /ws (see
// app.ts for the protocol) and shows the output with FPS and latency. Self-clocked: the next frame
// is captured when the server has consumed the previous one, so every frame is fresh when it is
// processed (a round trip on loopback is ~1 ms against ~500 ms per frame on the CPU). The server
// keeps only the latest frame per client anyway. What each server message means (and reconnecting
// with resume through a cluster gateway) is decided in page_session.js.

import { createPageSession, mayCapture, onConnectionClosed, onServerMessage, startMessage } from "./page_session.js";

const $ = (id) => document.getElementById(id);
const KIND_JPEG = 1, KIND_RGBA = 2, KIND_RGB = 3, HEADER = 16;

const state = {
  ...createPageSession(), // id, streaming, seq, acked, width, height, maxFrameBytes, ...
  ws: null,
  sentAt: new Map(),
  outTimes: [],
  frames: 0,
  sent: 0,
  format: "raw",
  lastStart: "",
};
globalThis.live2diff = state; // for tests and the console

const video = $("video"), input = $("input"), output = $("output");
const inCtx = input.getContext("2d", { willReadFrequently: true });
const outCtx = output.getContext("2d");

function showError(message) {
  $("error").textContent = message || "";
}

function settings() {
  return {
    type: "start",
    prompt: $("prompt").value,
    steps: Number($("steps").value),
    strength: Number($("strength").value),
    seed: Number($("seed").value),
    format: $("format").value,
  };
}

function sendSettings() {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  const s = settings();
  const { prompt, ...rest } = s;
  const key = JSON.stringify(rest);
  // Prompt-only changes are live (no new warm-up); other settings start a new stream.
  if (state.lastStart === key) state.ws.send(JSON.stringify({ type: "prompt", prompt }));
  else state.ws.send(JSON.stringify(startMessage(state, s)));
  state.lastStart = key;
  state.format = s.format;
}

async function start() {
  showError("");
  $("start").disabled = true;
  try {
    if (!video.srcObject) {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      await video.play();
    }
  } catch (e) {
    showError(`Cannot open the camera: ${e.message}`);
    $("start").disabled = false;
    return;
  }
  connect();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.lastStart = "";
  $("status").textContent = "connecting";
  ws.onmessage = (evt) => (typeof evt.data === "string" ? onJson(JSON.parse(evt.data)) : onFrame(evt.data));
  ws.onclose = (evt) => {
    if (state.ws !== ws) return;
    // The reason says why (e.g. "idle: no frames for 30 s"); 1006 is an abnormal close with none.
    const why = `closed${evt.reason ? `: ${evt.reason}` : evt.code === 1006 ? " (connection lost)" : ""}`;
    const retry = onConnectionClosed(state, evt.code);
    if (retry) { // e.g. the gateway died: another one (behind the same address) resumes the session
      $("status").textContent = `${why}; reconnecting`;
      setTimeout(connect, retry.reconnectMs);
      return;
    }
    $("status").textContent = why;
    $("start").disabled = false;
    $("start").textContent = "Reconnect";
  };
}

function onJson(msg) {
  const ws = state.ws;
  const todo = onServerMessage(state, msg);
  if (msg.type === "hello") {
    input.width = output.width = state.width;
    input.height = output.height = state.height;
    if (msg.notice) {
      $("notice").textContent = msg.notice;
      $("notice").style.display = "block";
    }
    if (msg.mjpeg) { // the cluster gateway has no MJPEG output
      $("mjpeg").href = msg.mjpeg;
      $("mjpeg").textContent = new URL(msg.mjpeg, location.href).href;
    }
  }
  if (msg.type === "ready") {
    $("start").textContent = "Apply";
    $("start").disabled = false;
  }
  if (todo.status) $("status").textContent = todo.status;
  if (todo.error) showError(todo.error);
  if (todo.sendStart) {
    state.lastStart = "";
    sendSettings();
  }
  if (todo.retryStartMs !== undefined) {
    setTimeout(() => {
      if (state.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      state.lastStart = "";
      sendSettings();
    }, todo.retryStartMs);
  }
}

async function onFrame(buf) {
  const view = new DataView(buf);
  const kind = view.getUint8(0), w = view.getUint16(2, true), h = view.getUint16(4, true);
  const engineMs = view.getUint16(6, true), seq = view.getUint32(8, true), ack = view.getUint32(12, true);
  state.acked = Math.max(state.acked, ack);
  const payload = new Uint8Array(buf, HEADER);
  if (kind === KIND_RGB) {
    const img = new ImageData(w, h);
    for (let i = 0, j = 0; i < payload.length; i += 3, j += 4) {
      img.data[j] = payload[i];
      img.data[j + 1] = payload[i + 1];
      img.data[j + 2] = payload[i + 2];
      img.data[j + 3] = 255;
    }
    outCtx.putImageData(img, 0, 0);
  } else if (kind === KIND_JPEG) {
    const bitmap = await createImageBitmap(new Blob([payload], { type: "image/jpeg" }));
    outCtx.drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
  }
  const now = performance.now();
  state.frames++;
  state.outTimes.push(now);
  while (state.outTimes.length && state.outTimes[0] < now - 2000) state.outTimes.shift();
  const sentAt = state.sentAt.get(seq);
  $("frames").textContent = String(state.frames);
  $("status").textContent = "streaming";
  $("engineMs").textContent = `${engineMs} ms`;
  if (sentAt !== undefined) $("latency").textContent = `${Math.round(now - sentAt)} ms`;
  for (const k of state.sentAt.keys()) if (k <= ack - 32) state.sentAt.delete(k);
}

async function capture() {
  const { width: w, height: h } = state;
  // Cover + centre crop, like the engine.
  const vw = video.videoWidth, vh = video.videoHeight;
  const scale = Math.max(w / vw, h / vh);
  const sw = w / scale, sh = h / scale;
  inCtx.drawImage(video, (vw - sw) / 2, (vh - sh) / 2, sw, sh, 0, 0, w, h);
  const seq = ++state.seq;
  let payload, kind;
  if (state.format === "jpeg") {
    const blob = await new Promise((r) => input.toBlob(r, "image/jpeg", 0.8));
    payload = new Uint8Array(await blob.arrayBuffer());
    kind = KIND_JPEG;
  } else {
    payload = inCtx.getImageData(0, 0, w, h).data;
    kind = KIND_RGBA;
  }
  // Our own limit first: a message over it would be refused (and one over Deno's 64 MiB cap would
  // close the connection with no reply at all).
  if (HEADER + payload.length > state.maxFrameBytes) {
    showError(
      `FRAME_TOO_LARGE: a frame is ${HEADER + payload.length} bytes, the server takes at most ${state.maxFrameBytes}`,
    );
    state.streaming = false;
    return;
  }
  const msg = new Uint8Array(HEADER + payload.length);
  const view = new DataView(msg.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, 1);
  view.setUint16(2, w, true);
  view.setUint16(4, h, true);
  view.setUint32(8, seq, true);
  msg.set(payload, HEADER);
  state.sentAt.set(seq, performance.now());
  state.ws.send(msg);
  state.sent++;
  $("sent").textContent = String(state.sent);
}

let capturing = false;
setInterval(async () => {
  const now = performance.now();
  while (state.outTimes.length && state.outTimes[0] < now - 2000) state.outTimes.shift();
  $("fps").textContent = state.outTimes.length > 1
    ? ((state.outTimes.length - 1) / ((state.outTimes.at(-1) - state.outTimes[0]) / 1000)).toFixed(2)
    : "–";
  const ws = state.ws;
  if (capturing || !state.streaming || !ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2) return;
  if (!mayCapture(state) || ws.bufferedAmount > 0) return; // self-clocked: one frame in flight
  capturing = true;
  try {
    await capture();
  } finally {
    capturing = false;
  }
}, 15);

$("start").onclick = () => (state.ws && state.ws.readyState === WebSocket.OPEN ? sendSettings() : start());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    if (state.ws && state.ws.readyState === WebSocket.OPEN) sendSettings();
  }
});
