/**
 * Runs a worker: `deno task worker --nats nats://a:4222,nats://b:4222 [--engine engines/x.l2de]
 * [--devices cuda:0-3] [--slots 4] [--size 512] [--port 9101]`. SIGTERM or SIGINT drains it: no new
 * sessions, running ones get `--drain-s` seconds, then move to other workers.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { backendAvailable } from "../ffi/native.ts";
import { Device, DevicePool, parseDevices } from "./devices.ts";
import { EchoHost } from "./echo.ts";
import { createWorker } from "./worker.ts";
import { exitWithUsage, intFlag, natsServers, stopOnSignals } from "./cli.ts";
import { parseSide } from "../examples/_engine.ts";

const USAGE = `Usage: deno task worker --nats <urls> [options]
  --nats <urls>          NATS servers, comma-separated (default $NATS_URL or nats://127.0.0.1:4222)
  --engine <file>        engine file (default $LIVE2DIFF_ENGINE, else the default engine with RANDOM weights;
                         "echo" runs a stand-in that returns its inputs, for transport measurements)
  --devices <list>       cpu, cuda, cuda:1, cuda:0-3, comma-separated (default every GPU is not probed:
                         cuda:0 when CUDA is available, else cpu)
  --slots <n>            streams per device (default 4 on the CPU, 8 on CUDA)
  --size <n>             stream width and height, a multiple of 64 (default 64 on the CPU, 512 on CUDA)
  --threads <n>          CPU threads per CPU engine (default all cores)
  --id <id>              worker id (default a random UUID)
  --port <n>             serve /health and /metrics on this port (default none; 0 picks one)
  --host <addr>          metrics address (default 127.0.0.1)
  --heartbeat-ms <n>     heartbeat period (default 1000)
  --idle-ms <n>          close sessions whose gateway is silent this long (default 10000)
  --drain-s <n>          seconds running sessions may go on after SIGTERM (default 30)
  --quiet                no log lines`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nats: { type: "string" },
      engine: { type: "string" },
      devices: { type: "string" },
      slots: { type: "string" },
      size: { type: "string" },
      threads: { type: "string" },
      id: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "heartbeat-ms": { type: "string" },
      "idle-ms": { type: "string" },
      "drain-s": { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const log = values.quiet ? undefined : (line: string) => console.error(`[worker] ${line}`);
  try {
    const specs = parseDevices(values.devices ?? (backendAvailable("cuda") ? "cuda:0" : "cpu"));
    const cuda = specs[0]!.backend === "cuda";
    const slots = intFlag("slots", values.slots, cuda ? 8 : 4, 1);
    const size = values.size ? parseSide("size", values.size) : cuda ? 512 : 64;
    const engine = values.engine ?? (Deno.env.get("LIVE2DIFF_ENGINE") || undefined);
    const pool = engine === "echo"
      ? new DevicePool(specs.map((_, i) => new Device(`echo:${i}`, new EchoHost(), slots)))
      : await DevicePool.load(specs, {
        engine,
        slotsPerDevice: slots,
        threads: values.threads ? intFlag("threads", values.threads, 0, 1) : undefined,
      });
    const worker = await createWorker({
      nats: natsServers(values.nats),
      pool,
      width: size,
      height: size,
      id: values.id,
      heartbeatMs: intFlag("heartbeat-ms", values["heartbeat-ms"], 1000, 50),
      sessionIdleMs: intFlag("idle-ms", values["idle-ms"], 10_000, 100),
      drainMs: intFlag("drain-s", values["drain-s"], 30, 0) * 1000,
      log,
    });
    let http: Deno.HttpServer | null = null;
    if (values.port !== undefined) {
      const port = intFlag("port", values.port, 0, 0, 65535);
      http = Deno.serve({
        hostname: values.host ?? "127.0.0.1",
        port,
        onListen: ({ hostname, port }) => log?.(`metrics on http://${hostname}:${port}/metrics`),
      }, (req) => worker.fetch(req));
    }
    console.log(
      `live2diff worker ${worker.id}: ${pool.devices.map((d) => d.name).join(", ")}, ${slots} slots each, ` +
        `${size}x${size}`,
    );
    stopOnSignals(async () => {
      log?.("drain requested");
      await worker.drain();
      await http?.shutdown();
      pool.close();
    });
  } catch (e) {
    exitWithUsage(e, USAGE);
  }
}
