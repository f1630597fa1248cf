/**
 * The webcam page in real headless Chromium (Debian `chromium`, `$CHROMIUM` to choose another)
 * with a fake camera: the page opens, streams camera frames over the WebSocket to a live server
 * on the CPU default engine, output frames arrive and are drawn, a live prompt change keeps them
 * coming, and a screenshot is saved (`$L2D_ARTIFACTS_DIR`, default `<tmp>/live2diff-artifacts`,
 * file `browser_e2e.png`). Ignored when Chromium is not installed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";
import { Engine } from "../mod.ts";
import { createLive2DiffServer } from "../examples/server/app.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
let HAS_CHROMIUM = false;
try {
  HAS_CHROMIUM = Deno.statSync(CHROMIUM).isFile;
} catch { /* missing */ }

Deno.test({
  name: `browser e2e: the webcam page streams through the server in headless Chromium${
    HAS_CHROMIUM
      ? ""
      : ` (ignored: no ${CHROMIUM}; install chromium, Debian: apt-get install chromium, or set CHROMIUM)`
  }`,
  ignore: !HAS_CHROMIUM,
  // Playwright keeps its own pipes and timers around the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const engine = await Engine.loadDefault({ device: "cpu" });
    const server = createLive2DiffServer({ engine, width: 64, height: 64 });
    const ac = new AbortController();
    const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: resolve }, server.app.fetch);
    const { port } = await listening;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
      ], // Playwright starts it with a new, empty profile (its own --user-data-dir)
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 640 } });
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.click("#start");

      // Output frames arrive and are drawn.
      // (Page code is given as strings: this file is type-checked without the DOM library.)
      const framesAtLeast = (n: number) => `Number(document.getElementById("frames").textContent) >= ${n}`;
      await page.waitForFunction(framesAtLeast(3), null, { timeout: 90_000 });
      const ui = await page.evaluate(`(() => {
        const out = document.getElementById("output");
        const px = out.getContext("2d").getImageData(0, 0, out.width, out.height).data;
        let nonZero = 0;
        for (let i = 0; i < px.length; i += 4) if (px[i] || px[i + 1] || px[i + 2]) nonZero++;
        const text = (id) => document.getElementById(id).textContent ?? "";
        return {
          width: out.width,
          height: out.height,
          nonZero,
          notice: text("notice"),
          noticeShown: getComputedStyle(document.getElementById("notice")).display !== "none",
          fps: text("fps"),
          latency: text("latency"),
          error: text("error"),
          mjpeg: text("mjpeg"),
          videoWidth: document.getElementById("video").videoWidth,
        };
      })()`) as Record<string, string & number>;
      assert.equal(ui.width, 64);
      assert.equal(ui.height, 64);
      assert.ok(ui.videoWidth > 0, "the fake camera is playing");
      assert.ok(ui.nonZero > 0, "output pixels were drawn");
      assert.ok(ui.noticeShown, "the random-weights notice is visible");
      assert.match(ui.notice, /RANDOM weights/);
      assert.match(ui.fps, /^\d+(\.\d+)?$/, `FPS shown: ${ui.fps}`);
      assert.match(ui.latency, /^\d+ ms$/, `latency shown: ${ui.latency}`);
      assert.match(ui.mjpeg, /\/mjpeg\/[0-9a-f-]{36}$/);
      assert.equal(ui.error, "");

      // A live prompt change: acknowledged, and frames keep coming without a new warm-up.
      const before = Number(await page.textContent("#frames"));
      await page.fill("#prompt", "a pencil sketch");
      await page.press("#prompt", "Enter");
      await page.waitForFunction(`document.getElementById("status").textContent.includes("a pencil sketch")`);
      await page.waitForFunction(framesAtLeast(before + 2), null, { timeout: 60_000 });

      const m = server.metrics();
      assert.equal(m.clients, 1);
      assert.ok(m.framesOut >= 5);
      assert.equal(m.errors, 0);
      assert.ok(m.maxPendingPerClient <= 1);
      assert.deepEqual(pageErrors, []);

      const dir = Deno.env.get("L2D_ARTIFACTS_DIR") ?? join(tmpdir(), "live2diff-artifacts");
      await Deno.mkdir(dir, { recursive: true });
      const shot = join(dir, "browser_e2e.png");
      await page.screenshot({ path: shot });
      const png = await Deno.readFile(shot);
      assert.deepEqual([...png.slice(1, 4)], [0x50, 0x4e, 0x47], "a PNG screenshot");
      const fps = await page.textContent("#fps"), latency = await page.textContent("#latency");
      console.log(`browser e2e: ${m.framesOut} frames out, page FPS ${fps}, latency ${latency}; screenshot ${shot}`);
    } finally {
      await browser.close();
      await server.close();
      ac.abort();
      await http.finished;
    }
  },
});
