/**
 * The webcam demo server (examples/server): HTTP routes through `app.request()`, then the
 * WebSocket protocol against live servers on loopback running the CPU default engine (64x64):
 * two clients at once (isolation, checked against reference streams), live prompt changes, MJPEG,
 * bad messages and oversize frames, the client cap, rate limiting, and a flood with bounded memory.
 */

import assert from "node:assert/strict";
import jpeg from "jpeg-js";
import { Engine } from "../mod.ts";
import { app, createLive2DiffServer, KIND, type ServerOptions } from "../examples/server/app.ts";
import { encodeFrame, solidRgba, TestClient } from "./_fixtures/examples_ws_client.ts";

const SIZE = 64;
let engineP: Promise<Engine> | null = null;
const engine = () => (engineP ??= Engine.loadDefault({ device: "cpu" }));

/** Runs `fn` against a live server on 127.0.0.1 (random port) sharing the CPU default engine. */
async function withServer(
  options: Omit<ServerOptions, "engine">,
  fn: (ctx: { url: string; server: ReturnType<typeof createLive2DiffServer> }) => Promise<void>,
) {
  const server = createLive2DiffServer({ engine: await engine(), width: SIZE, height: SIZE, ...options });
  const ac = new AbortController();
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: resolve }, server.app.fetch);
  const addr = await listening;
  try {
    await fn({ url: `127.0.0.1:${addr.port}`, server });
  } finally {
    await server.close();
    ac.abort();
    await http.finished;
  }
}

const START = { type: "start", steps: 2, strength: 0.5 };

Deno.test("server: app.request routes (page, script, health, metrics, refusals)", async () => {
  const page = await app.request("/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /text\/html/);
  const html = await page.text();
  for (const id of ['id="prompt"', 'id="steps"', 'id="strength"', 'id="seed"', 'id="fps"', 'id="latency"']) {
    assert.ok(html.includes(id), `page has ${id}`);
  }
  assert.ok(html.includes('id="video"') && html.includes('id="output"'), "input and output side by side");

  const js = await app.request("/app.js");
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type") ?? "", /javascript/);
  assert.ok((await js.text()).includes("getUserMedia"));

  const health = await app.request("/health");
  assert.equal(health.status, 200);
  const h = await health.json();
  assert.equal(h.ok, true);
  assert.equal(h.clients, 0);
  assert.equal(h.maxClients, 4);
  assert.equal(h.pendingFrames, 0);
  assert.equal(typeof h.memory.rss, "number");

  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /^live2diff_clients 0$/m);
  assert.match(metrics, /^live2diff_max_pending_per_client 0$/m);

  const plain = await app.request("/ws");
  assert.equal(plain.status, 426, "a plain GET on /ws is told to upgrade");
  await plain.body?.cancel();
  const cross = await app.request("/ws", {
    headers: { upgrade: "websocket", origin: "https://evil.example", host: "127.0.0.1:8000" },
  });
  assert.equal(cross.status, 403, "cross-origin pages may not stream");
  await cross.body?.cancel();
  const mjpeg = await app.request(`/mjpeg/${crypto.randomUUID()}`);
  assert.equal(mjpeg.status, 404);
  await mjpeg.body?.cancel();
  const missing = await app.request("/nope");
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});

/** Sends `n` solid frames one at a time (waiting for each to be consumed); returns the outputs. */
async function streamFrames(c: TestClient, rgb: [number, number, number], firstSeq: number, n: number) {
  const data = solidRgba(SIZE, SIZE, rgb);
  for (let i = 0; i < n; i++) {
    const seq = firstSeq + i;
    c.ws.send(encodeFrame(KIND.RGBA, SIZE, SIZE, seq, data));
    await c.until(() => c.acked >= seq, `frame ${seq} to be consumed`, 60_000);
  }
  return c.frames;
}

Deno.test("server: two clients at once get only their own stream (isolation, reference outputs, MJPEG, live prompt)", async () => {
  await withServer({}, async ({ url, server }) => {
    const a = new TestClient(`ws://${url}/ws`), b = new TestClient(`ws://${url}/ws`);
    try {
      const [ha, hb] = await Promise.all([a.message("hello"), b.message("hello")]);
      assert.notEqual(ha.id, hb.id);
      assert.equal(ha.width, SIZE);
      assert.equal(ha.synthetic, true);
      assert.match(String(ha.notice), /RANDOM weights/);
      a.sendJson({ ...START, prompt: "a red fox", seed: 1 });
      b.sendJson({ ...START, prompt: "a blue whale", seed: 2 });
      const [ra, rb] = await Promise.all([a.message("ready"), b.message("ready")]);
      assert.equal(ra.latency, 1);
      assert.equal(rb.width, SIZE);

      // MJPEG viewer of A, opened before A's first output.
      const mjpeg = await fetch(`http://${url}${ha.mjpeg}`);
      assert.equal(mjpeg.status, 200);
      assert.match(mjpeg.headers.get("content-type") ?? "", /^multipart\/x-mixed-replace; boundary=frame/);
      assert.equal(server.metrics().mjpegViewers, 1);
      const firstPart = readFirstJpeg(mjpeg.body!);

      const N = 11; // 8 warm-up + 1 latency + 2 outputs
      const [fa, fb] = await Promise.all([
        streamFrames(a, [255, 0, 0], 1001, N),
        streamFrames(b, [0, 0, 255], 2001, N),
      ]);
      for (const [frames, base, name] of [[fa, 1001, "A"], [fb, 2001, "B"]] as const) {
        assert.equal(frames.length, 2, `${name} gets outputs after warm-up + latency`);
        for (const f of frames) {
          assert.equal(f.kind, KIND.RGB);
          assert.equal(f.width, SIZE);
          assert.equal(f.height, SIZE);
          assert.equal(f.payload.byteLength, SIZE * SIZE * 3);
          assert.ok(f.seq >= base && f.seq < base + N, `${name}'s output comes from its own input (seq ${f.seq})`);
          assert.equal(f.seq, f.ack - 1, "output = the frame pushed `latency` pushes earlier");
        }
      }
      assert.deepEqual(fa.map((f) => f.seq), [1009, 1010]);
      assert.deepEqual(fb.map((f) => f.seq), [2009, 2010]);

      // The MJPEG stream of A carries A's output.
      const jpegBytes = await firstPart;
      const decoded = jpeg.decode(jpegBytes, { useTArray: true, formatAsRGBA: false });
      assert.equal(decoded.width, SIZE);
      assert.ok(
        fa.some((f) => meanAbsDiff(f.payload, decoded.data) < 12),
        "the MJPEG frame is one of A's outputs",
      );
      await a.until(() => server.metrics().mjpegViewers === 0, "the viewer to be released when it disconnects");

      // Live prompt change: no new warm-up, the next push gives an output at once.
      a.sendJson({ type: "prompt", prompt: "a green frog" });
      await a.message("prompt");
      await streamFrames(a, [255, 0, 0], 1001 + N, 1);
      assert.equal(a.frames.length, 3, "output continues right after the prompt change");

      const m = server.metrics();
      assert.equal(m.clients, 2);
      assert.equal(m.framesProcessed, 2 * N + 1);
      assert.equal(m.framesDropped, 0);
      assert.equal(m.errors, 0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }

    // Reference: the same settings and inputs through fresh streams give byte-identical outputs, and
    // A's differ from B's: nothing of one client leaked into the other.
    const eng = await engine();
    const reference = async (prompt: string, seed: number, rgb: [number, number, number]) => {
      using s = await eng.createStream({ prompt, seed, width: SIZE, height: SIZE, steps: 2, strength: 0.5 });
      const outs: Uint8Array[] = [];
      for (let i = 0; i < 11; i++) {
        const o = await s.push({ data: solidRgba(SIZE, SIZE, rgb), width: SIZE, height: SIZE });
        if (o) outs.push(o.data);
      }
      return outs;
    };
    const refA = await reference("a red fox", 1, [255, 0, 0]);
    const refB = await reference("a blue whale", 2, [0, 0, 255]);
    assert.deepEqual(a.frames.slice(0, 2).map((f) => f.payload), refA, "A's outputs = A's reference");
    assert.deepEqual(b.frames.map((f) => f.payload), refB, "B's outputs = B's reference");
    assert.notDeepEqual(refA, refB);
  });
});

Deno.test("server: bad messages, oversize frames and the client cap get clear errors", async () => {
  await withServer({ maxClients: 2, maxFrameBytes: 64 * 1024 }, async ({ url, server }) => {
    const a = new TestClient(`ws://${url}/ws`), b = new TestClient(`ws://${url}/ws`);
    let c: TestClient | null = null, d: TestClient | null = null;
    try {
      await Promise.all([a.message("hello"), b.message("hello")]);
      c = new TestClient(`ws://${url}/ws`);
      const full = await c.error("SERVER_FULL");
      assert.match(String(full.message), /Server full: 2 clients/);
      assert.equal((await c.closed).code, 1013, "refused with 1013 (try again later)");
      assert.equal(server.metrics().refused, 1);

      const expectError = async (send: () => void, code: string, pattern?: RegExp) => {
        const from = a.json.length;
        send();
        const err = await a.until(
          () => a.json.slice(from).find((m) => m.type === "error"),
          `error ${code}`,
        );
        assert.equal(err.code, code, JSON.stringify(err));
        if (pattern) assert.match(String(err.message), pattern);
      };
      await expectError(() => a.ws.send("{not json"), "BAD_MESSAGE", /JSON/);
      await expectError(() => a.sendJson({ type: "launch" }), "BAD_MESSAGE", /Unknown message type/);
      await expectError(() => a.ws.send("[1,2]"), "BAD_MESSAGE");
      await expectError(() => a.ws.send("x".repeat(10_000)), "BAD_MESSAGE", /limited/);
      await expectError(
        () => a.ws.send(encodeFrame(KIND.RGBA, SIZE, SIZE, 1, solidRgba(SIZE, SIZE, [1, 2, 3]))),
        "NOT_STARTED",
      );
      await expectError(() => a.sendJson({ ...START, prompt: "x", seed: -1 }), "BAD_MESSAGE", /seed/);
      await expectError(() => a.sendJson({ ...START, prompt: "x", strength: 2 }), "BAD_MESSAGE", /strength/);
      await expectError(() => a.sendJson({ ...START, prompt: 42 }), "BAD_MESSAGE", /prompt/);
      await expectError(() => a.sendJson({ ...START, prompt: "y".repeat(1001) }), "BAD_MESSAGE", /prompt/);
      // A frame sent right after "start" (before "ready") is taken.
      a.sendJson({ ...START, prompt: "ok", seed: 3 });
      a.ws.send(encodeFrame(KIND.RGBA, SIZE, SIZE, 100, solidRgba(SIZE, SIZE, [1, 2, 3])));
      await a.message("ready");
      await a.until(() => a.acked >= 100, "the frame sent before ready to be consumed");
      // Re-starting with other settings replaces the stream (the old one is closed).
      a.sendJson({ ...START, prompt: "ok", seed: 4 });
      await a.until(() => a.json.filter((m) => m.type === "ready").length === 2, "a second ready");
      await expectError(() => a.ws.send(new Uint8Array(5)), "BAD_FRAME", /header/);
      await expectError(() => a.ws.send(encodeFrame(9, 4, 4, 2, new Uint8Array(64))), "BAD_FRAME", /kind/);
      await expectError(() => a.ws.send(encodeFrame(KIND.RGBA, 4, 4, 3, new Uint8Array(60))), "BAD_FRAME", /needs 64/);
      await expectError(() => a.ws.send(encodeFrame(KIND.RGB, 0, 4, 4, new Uint8Array(0))), "BAD_FRAME", /size/);
      await expectError(
        () => a.ws.send(encodeFrame(KIND.RGBA, 256, 256, 5, new Uint8Array(256 * 256 * 4))),
        "FRAME_TOO_LARGE",
        /65536 bytes/,
      );
      await expectError(
        () => a.ws.send(encodeFrame(KIND.JPEG, 8, 8, 6, new Uint8Array([0xff, 0xd8, 1, 2, 3, 4]))),
        "BAD_FRAME",
        /JPEG/,
      );
      // A real JPEG decodes and counts as a processed (warm-up) frame.
      const small = jpeg.encode({ data: solidRgba(32, 48, [0, 200, 0]), width: 32, height: 48 }, 80).data;
      a.ws.send(encodeFrame(KIND.JPEG, 32, 48, 7, new Uint8Array(small)));
      await a.until(() => a.acked >= 7, "the JPEG frame to be consumed");
      // The connection survives all of this.
      a.sendJson({ type: "ping", t: 5 });
      assert.equal((await a.message("pong")).t, 5);
      assert.equal(a.ws.readyState, WebSocket.OPEN);
      assert.ok(server.metrics().errors >= 15);

      // A slot frees when a client leaves.
      await b.close();
      await a.until(() => server.metrics().clients === 1, "the server to see B leave");
      d = new TestClient(`ws://${url}/ws`);
      assert.equal((await d.message("hello")).type, "hello");
    } finally {
      await Promise.all([a.close(), b.close(), c?.close(), d?.close()]);
    }
  });
});

Deno.test("server: a message flood is rate limited with throttled errors", async () => {
  await withServer({ maxMessagesPerSecond: 50 }, async ({ url, server }) => {
    const a = new TestClient(`ws://${url}/ws`);
    try {
      await a.message("hello");
      for (let i = 0; i < 500; i++) a.sendJson({ type: "ping", t: i });
      const err = await a.error("RATE_LIMITED");
      assert.match(String(err.message), /at most 50 per second/);
      await a.until(
        () => server.metrics().rateLimited + a.json.filter((m) => m.type === "pong").length >= 500,
        "all 500",
      );
      const pongs = a.json.filter((m) => m.type === "pong").length;
      assert.ok(pongs >= 40 && pongs <= 120, `about one second of burst answered, got ${pongs}`);
      const errors = a.json.filter((m) => m.type === "error").length;
      assert.ok(errors <= 3, `errors are throttled (one a second), got ${errors}`);
    } finally {
      await a.close();
    }
  });
});

/** Runs `fn` against a server in its own process (so its memory can be measured alone). */
async function withServerProcess(options: Omit<ServerOptions, "engine">, fn: (url: string) => Promise<void>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_fixtures/examples_server_proc.ts", import.meta.url).pathname,
      JSON.stringify(options),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let out = "";
    while (!/PORT \d+/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the server process exited: ${out}`);
      out += value;
    }
    await fn(`127.0.0.1:${out.match(/PORT (\d+)/)![1]}`);
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
  }
}

Deno.test("server: a flood of 1000 frames keeps at most one pending frame and bounded memory", async () => {
  await withServerProcess({ width: SIZE, height: SIZE, maxMessagesPerSecond: 100_000 }, async (url) => {
    const health = async () => await (await fetch(`http://${url}/health`)).json();
    const a = new TestClient(`ws://${url}/ws`);
    try {
      await a.message("hello");
      a.sendJson({ ...START, prompt: "flood", seed: 9 });
      await a.message("ready");
      // Warm the stream up first (its native buffers are allocated then), then measure.
      const warm = solidRgba(SIZE, SIZE, [90, 90, 90]);
      for (let seq = 1; a.frames.length === 0; seq++) {
        a.ws.send(encodeFrame(KIND.RGBA, SIZE, SIZE, seq, warm));
        await a.until(() => a.acked >= seq, `warm-up frame ${seq}`, 60_000);
      }
      const first = a.acked + 1;
      const before = await health();
      let maxPending = 0, maxQueue = 0, maxRss = 0, sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const m = await health();
          maxPending = Math.max(maxPending, m.maxPendingPerClient, m.pendingFrames);
          maxQueue = Math.max(maxQueue, m.engineQueue);
          maxRss = Math.max(maxRss, m.memory.rss);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      // 512x512 RGBA inputs (1 MiB each, 1000 MiB in all; the engine scales them): a queue that
      // kept them would hold 1000 MiB. Dropped frames are garbage until V8 collects them, so the
      // bound checked is half of that.
      const BIG = 512;
      const colours: [number, number, number][] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]];
      const frames = colours.map((c) => solidRgba(BIG, BIG, c));
      for (let i = first; i < first + 1000; i++) {
        a.ws.send(encodeFrame(KIND.RGBA, BIG, BIG, i, frames[i % frames.length]!));
        while (a.ws.bufferedAmount > 8 * 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
      }
      await a.until(() => a.acked === first + 999, "the last frame to be consumed", 60_000);
      sampling = false;
      await sampler;
      const m = await health();
      assert.equal(m.framesReceived, first + 999, "the server received every frame");
      assert.ok(maxPending <= 1, `at most one pending frame per client, saw ${maxPending}`);
      assert.ok(maxQueue <= 1, `at most one native call queued per client, saw ${maxQueue}`);
      assert.equal(m.framesDropped + m.framesProcessed, first + 999);
      assert.ok(m.framesDropped >= 900, `stale frames are dropped, dropped ${m.framesDropped}`);
      assert.equal(m.pendingFrames, 0);
      const growth = maxRss - before.memory.rss;
      console.log(
        `flood: server RSS ${(before.memory.rss / 1048576).toFixed(0)} -> max ${(maxRss / 1048576).toFixed(0)} MiB, ` +
          `${m.framesProcessed} processed, ${m.framesDropped} dropped`,
      );
      assert.ok(growth < 500 * 1024 * 1024, `server RSS stays bounded, grew ${(growth / 1048576).toFixed(1)} MiB`);

      // Still streaming normally after the flood.
      const from = a.frames.length;
      const data = solidRgba(SIZE, SIZE, [10, 20, 30]);
      for (let seq = first + 1000; a.frames.length === from; seq++) {
        a.ws.send(encodeFrame(KIND.RGBA, SIZE, SIZE, seq, data));
        await a.until(() => a.acked >= seq, `frame ${seq}`, 60_000);
        assert.ok(seq < first + 1010, "outputs resume after the flood");
      }
      assert.equal(a.frames.at(-1)!.width, SIZE);
    } finally {
      await a.close();
    }
  });
});

Deno.test("server: main.ts serves on the chosen port and shows the random-weights notice", async () => {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../examples/server/main.ts", import.meta.url).pathname, "--port", "0", "--quiet"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  try {
    while (!/http:\/\/127\.0\.0\.1:\d+\//.test(out)) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    const url = out.match(/http:\/\/127\.0\.0\.1:\d+\//)?.[0];
    assert.ok(url, `main.ts printed its URL: ${out}`);
    assert.match(out, /cpu|cuda/);
    const h = await (await fetch(`${url}health`)).json();
    assert.equal(h.engine.loaded, true);
    assert.equal(h.engine.synthetic, true);
    assert.equal(h.stream.width, h.engine.device === "cpu" ? 64 : 512);
  } finally {
    child.kill("SIGTERM");
    await lines.cancel();
    const status = await child.status;
    const err = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.match(err, /NOTICE: This engine has RANDOM weights/);
    assert.match(err, /deno task build-engine/);
    assert.equal(status.code, 0, "exits cleanly on SIGTERM");
  }
});

/** Reads a multipart MJPEG body up to its first JPEG. */
async function readFirstJpeg(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = body.getReader();
  let buf = new Uint8Array(0);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error("MJPEG stream ended before a frame");
      const next = new Uint8Array(buf.byteLength + value.byteLength);
      next.set(buf);
      next.set(value, buf.byteLength);
      buf = next;
      const text = new TextDecoder("latin1").decode(buf);
      const head = text.match(/^--frame\r\nContent-Type: image\/jpeg\r\nContent-Length: (\d+)\r\n\r\n/);
      if (head && buf.byteLength >= head[0].length + Number(head[1])) {
        const jpegBytes = buf.slice(head[0].length, head[0].length + Number(head[1]));
        assert.deepEqual([...jpegBytes.slice(0, 2)], [0xff, 0xd8], "a JPEG (SOI)");
        return jpegBytes;
      }
    }
  } finally {
    await reader.cancel();
  }
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}
