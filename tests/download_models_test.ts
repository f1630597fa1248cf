/**
 * Model downloads (engines/download.ts) against a loopback Deno.serve server: Range resume after a cut
 * connection, sha256 verification (known hash, wrong hash, SHA256SUMS recorded on first use), HTTP errors.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DEFAULT_MODELS, DownloadError, downloadModels, type ModelFile, rebase } from "../engines/download.ts";

const BIG = new Uint8Array(3 << 20).map((_, i) => (i * 2654435761) >>> 24);
const SMALL = new TextEncoder().encode('{"hello": 1}');
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function serve() {
  const log: string[] = [];
  let cutOnce = true;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    log.push(`${path} ${range ?? ""}`);
    const body = path.endsWith("big.bin") ? BIG : path.endsWith("small.json") ? SMALL : null;
    if (!body) return new Response("no", { status: 404 });
    const start = range ? Number(/bytes=(\d+)-/.exec(range)![1]) : 0;
    const slice = body.subarray(start);
    const headers = { "content-length": String(slice.byteLength) } as Record<string, string>;
    if (range) headers["content-range"] = `bytes ${start}-${body.byteLength - 1}/${body.byteLength}`;
    if (path.endsWith("big.bin") && cutOnce) {
      // First request: send a third of the file, then break the connection.
      cutOnce = false;
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(slice.subarray(0, 1 << 20));
          setTimeout(() => c.error(new Error("cut")), 20);
        },
      });
      return new Response(stream, { status: range ? 206 : 200, headers });
    }
    return new Response(slice, { status: range ? 206 : 200, headers });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return { server, log, base };
}

Deno.test("download: resume after a cut connection, verify sha256, record SHA256SUMS", async () => {
  const { server, log, base } = serve();
  const dir = await Deno.makeTempDir();
  try {
    const files: ModelFile[] = [
      { dest: "m/big.bin", url: "https://huggingface.co/org/repo/resolve/main/big.bin", sha256: sha(BIG), group: "a" },
      { dest: "small.json", url: "https://example.org/x/small.json", sha256: null, group: "b" },
    ];
    const fetched = await downloadModels(dir, files, { baseUrl: base, quiet: true });
    assert.deepEqual(fetched, ["m/big.bin", "small.json"]);
    assert.deepEqual(await Deno.readFile(join(dir, "m/big.bin")), BIG);
    assert.ok(log.some((l) => l.startsWith("/org/repo/resolve/main/big.bin bytes=")), `no ranged request: ${log}`);
    const sums = await Deno.readTextFile(join(dir, "SHA256SUMS"));
    assert.match(sums, new RegExp(`${sha(SMALL)}  small.json`));
    // Second run: nothing to fetch; a corrupted file is caught against the recorded hash.
    assert.deepEqual(await downloadModels(dir, files, { baseUrl: base, quiet: true }), []);
    await Deno.writeTextFile(join(dir, "small.json"), "tampered");
    await assert.rejects(downloadModels(dir, files, { baseUrl: base, quiet: true }), /does not match/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download: wrong hash and HTTP errors are clear errors", async () => {
  const { server, base } = serve();
  const dir = await Deno.makeTempDir();
  try {
    const wrong: ModelFile = { dest: "s.json", url: "https://h/small.json", sha256: "ab".repeat(32), group: "a" };
    await assert.rejects(
      downloadModels(dir, [wrong], { baseUrl: base, quiet: true }),
      (e) => e instanceof DownloadError && /sha256 .* does not match the expected/.test(e.message),
    );
    await assert.rejects(Deno.stat(join(dir, "s.json")));
    await assert.rejects(Deno.stat(join(dir, "s.json.part")));
    const missing: ModelFile = { dest: "n.bin", url: "https://h/none.bin", sha256: null, group: "a" };
    await assert.rejects(downloadModels(dir, [missing], { baseUrl: base, quiet: true }), /HTTP 404/);
    assert.equal(rebase("https://huggingface.co/a/b?x=1", "http://127.0.0.1:9/"), "http://127.0.0.1:9/a/b?x=1");
    assert.ok(
      DEFAULT_MODELS.some((f) => f.group === "lcm-lora") && DEFAULT_MODELS.some((f) => f.dest === "live2diff.ckpt"),
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
