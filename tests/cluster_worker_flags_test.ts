/**
 * `deno task worker` checks every flag before it loads an engine: a bad NATS list or timing flag
 * fails at once with an error naming the flag (exit 2), even where the engine named is missing,
 * instead of after seconds to minutes of engine loading.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { natsServerList } from "../cluster/cli.ts";
import { parseWorkerFlags } from "../cluster/worker_main.ts";

const noCuda = () => false;

Deno.test("natsServerList: host:port and nats/tls/ws URLs pass, anything else names --nats", () => {
  assert.deepEqual(natsServerList("nats://a:4222, b:4223,tls://c:1"), ["nats://a:4222", "b:4223", "tls://c:1"]);
  for (const bad of ["", " , ", "http://a:4222", "nats://", "a b:1"]) {
    assert.throws(() => natsServerList(bad), (e: unknown) => e instanceof RangeError && /--nats/.test(e.message), bad);
  }
});

Deno.test("parseWorkerFlags: defaults, and each bad flag is a RangeError naming it", () => {
  const f = parseWorkerFlags(["--nats", "nats://127.0.0.1:4222", "--engine", "echo"], noCuda);
  assert.deepEqual(
    [f.nats, f.engine, f.devices, f.slots, f.size, f.heartbeatMs, f.idleMs, f.drainMs, f.port, f.host],
    [
      ["nats://127.0.0.1:4222"],
      "echo",
      [{ backend: "cpu", index: 0 }],
      4,
      64,
      1000,
      10_000,
      30_000,
      undefined,
      "127.0.0.1",
    ],
  );
  const cases: [string[], RegExp][] = [
    [["--nats", "http://x:1"], /--nats/],
    [["--heartbeat-ms", "5"], /--heartbeat-ms/],
    [["--idle-ms", "x"], /--idle-ms/],
    [["--drain-s", "1.5"], /--drain-s/],
    [["--port", "70000"], /--port/],
    [["--threads", "0"], /--threads/],
    [["--devices", "gpu"], /--devices/],
    [["--slots", "0"], /--slots/],
    [["--size", "100"], /--size/],
  ];
  for (const [args, re] of cases) {
    assert.throws(
      () => parseWorkerFlags(args, noCuda),
      (e: unknown) => e instanceof RangeError && re.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("worker_main: a bad flag fails before the engine is loaded (exit 2, the flag named)", async () => {
  const script = fileURLToPath(new URL("../cluster/worker_main.ts", import.meta.url));
  const config = fileURLToPath(new URL("../deno.json", import.meta.url));
  const missing = "/nonexistent/engine-that-would-fail-to-load.l2de";
  for (const [flag, value] of [["--heartbeat-ms", "5"], ["--nats", "http://x:1"], ["--drain-s", "x"]]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script, "--engine", missing, "--devices", "cpu", flag!, value!],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, err);
    assert.match(err, new RegExp(`error: ${flag}`), err);
    assert.doesNotMatch(err, /engine-that-would-fail/, "the engine was not opened");
  }
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", config, script, "--help", "--heartbeat-ms", "5"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /^Usage: deno task worker/);
});
