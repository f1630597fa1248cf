/**
 * Serves the live webcam demo (`app.ts`): `deno task serve [--port 8000] [--host 127.0.0.1]
 * [--engine engines/x.l2de] [--device cpu|cuda|auto] [--size 64] [--max-clients 4] [--idle-timeout 30]
 * [--max-first-frame 60]`.
 *
 * Without an engine (`--engine` or `LIVE2DIFF_ENGINE`) it uses the default engine, whose weights
 * are random: the output is noise-like, and a notice says how to build a real engine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLive2DiffServer } from "./app.ts";
import { limitMallocArenas } from "./malloc.ts";
import { defaultStreamSize, loadEngine, parseDevice, parseSide, printNotice } from "../_engine.ts";

const USAGE = `Usage: deno task serve [options]
  --port <n>          port (default $PORT or 8000; 0 picks a free one)
  --host <addr>       address to listen on (default 127.0.0.1: this machine only)
  --engine <file>     engine file (default $LIVE2DIFF_ENGINE, else the default engine with RANDOM weights)
  --device <d>        cpu, cuda or auto (default auto)
  --size <n>          stream width and height, a multiple of 64 (default 64 on the CPU, 512 on CUDA)
  --max-clients <n>   clients streaming at once (default 4; fewer when the engine cannot serve them, see below)
  --max-first-frame <s>  admit only as many clients as all get a first frame within this time (default 60)
  --idle-timeout <s>  close a client that sends no frame for this long (default 30)
  --quiet             no per-client log lines`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      engine: { type: "string" },
      device: { type: "string" },
      size: { type: "string" },
      "max-clients": { type: "string" },
      "max-first-frame": { type: "string" },
      "idle-timeout": { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    const port = Number(values.port ?? Deno.env.get("PORT") ?? 8000);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`--port must be 0..65535`);
    const maxClients = Number(values["max-clients"] ?? 4);
    if (!Number.isInteger(maxClients) || maxClients < 1) {
      throw new RangeError(`--max-clients must be a positive integer`);
    }
    const seconds = (name: string, value: string | undefined, fallback: number) => {
      const n = Number(value ?? fallback);
      if (!(n > 0 && n <= 86400)) throw new RangeError(`--${name} must be a number of seconds in (0, 86400]`);
      return n * 1000;
    };
    const maxFirstFrameMs = seconds("max-first-frame", values["max-first-frame"], 60);
    const idleTimeoutMs = seconds("idle-timeout", values["idle-timeout"], 30);
    const hostname = values.host ?? "127.0.0.1";

    // Before the engine starts its threads: fewer glibc arenas, so one stream's freed buffers serve
    // the next (MALLOC_ARENA_MAX, when set, wins). See malloc.ts.
    limitMallocArenas(2);
    const engine = await loadEngine({ engine: values.engine, device: parseDevice(values.device) });
    const size = values.size ? parseSide("size", values.size) : defaultStreamSize(engine);
    printNotice(engine);
    const server = createLive2DiffServer({
      engine,
      width: size,
      height: size,
      maxClients,
      maxFirstFrameMs,
      idleTimeoutMs,
      log: values.quiet ? undefined : (line) => console.error(line),
    });
    // Measure the engine now rather than when the first client connects (admission needs it).
    server.capacity().then((c) => {
      const servable = server.metrics().maxClients;
      console.error(
        `engine: warm-up ${c.warmupMs.toFixed(0)} ms, push ${c.pushMs.toFixed(0)} ms at ${size}x${size}: ` +
          `${servable} clients admitted at most (first frame within ${maxFirstFrameMs / 1000} s)`,
      );
    }, (e) => console.error(`error: cannot measure the engine: ${e instanceof Error ? e.message : e}`));
    const http = Deno.serve({
      hostname,
      port,
      onListen: ({ hostname, port }) => {
        console.log(
          `live2diff demo: http://${hostname}:${port}/  (${engine.device}, ${size}x${size}, ` +
            `${engine.synthetic ? "default engine: RANDOM weights" : engine.path})`,
        );
      },
    }, server.app.fetch);
    const stop = async () => {
      await server.close();
      await http.shutdown();
      engine.close();
      Deno.exit(0);
    };
    Deno.addSignalListener("SIGINT", stop);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
  } catch (e) {
    console.error(`error: ${e instanceof Error ? e.message : e}\n\n${USAGE}`);
    Deno.exit(2);
  }
}
