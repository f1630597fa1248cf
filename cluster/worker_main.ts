/**
 * Runs a worker: `deno task worker --nats nats://a:4222,nats://b:4222 [--engine engines/x.l2de]
 * [--devices cuda:0-3] [--slots 4] [--size 512] [--port 9101]`. SIGTERM or SIGINT drains it: no new
 * sessions, running ones get `--drain-s` seconds, then move to other workers.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { backendAvailable } from "../ffi/native.ts";
import { Device, DevicePool, type DeviceSpec, parseDevices } from "./devices.ts";
import { EchoHost } from "./echo.ts";
import { createWorker } from "./worker.ts";
import { exitWithUsage, intFlag, natsServerList, stopOnSignals } from "./cli.ts";
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

/** The worker's command line, every flag checked (nothing loaded or connected yet). */
export interface WorkerFlags {
  /** `--help` was given: print the usage, nothing else. */
  help: boolean;
  /** NATS servers (checked syntax; see `natsServerList`). */
  nats: string[];
  /** Engine file, "echo", or undefined for the default engine. */
  engine: string | undefined;
  /** Devices to load an engine on. */
  devices: DeviceSpec[];
  /** Streams per device. */
  slots: number;
  /** Stream width and height. */
  size: number;
  /** CPU threads per CPU engine (undefined: all cores). */
  threads: number | undefined;
  /** Worker id (undefined: a random UUID). */
  id: string | undefined;
  /** Metrics port (undefined: no metrics server). */
  port: number | undefined;
  /** Metrics address. */
  host: string;
  /** Heartbeat period in milliseconds. */
  heartbeatMs: number;
  /** Idle-session timeout in milliseconds. */
  idleMs: number;
  /** Drain time in milliseconds. */
  drainMs: number;
  /** No log lines. */
  quiet: boolean;
}

/**
 * Parses and checks every flag of `deno task worker` BEFORE anything is loaded: loading engines
 * takes seconds to minutes (and GPU memory), so a typo in a NATS or timing flag must fail at once
 * with a RangeError naming the flag, not after the engines are up.
 */
export function parseWorkerFlags(
  args: string[],
  cudaAvailable: () => boolean = () => backendAvailable("cuda"),
): WorkerFlags {
  const { values } = parseArgs({
    args,
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
  const nats = natsServerList(values.nats);
  const heartbeatMs = intFlag("heartbeat-ms", values["heartbeat-ms"], 1000, 50);
  const idleMs = intFlag("idle-ms", values["idle-ms"], 10_000, 100);
  const drainMs = intFlag("drain-s", values["drain-s"], 30, 0) * 1000;
  const port = values.port === undefined ? undefined : intFlag("port", values.port, 0, 0, 65535);
  const threads = values.threads ? intFlag("threads", values.threads, 0, 1) : undefined;
  const devices = parseDevices(values.devices ?? (cudaAvailable() ? "cuda:0" : "cpu"));
  const cuda = devices[0]!.backend === "cuda";
  return {
    help: values.help,
    nats,
    engine: values.engine ?? (Deno.env.get("LIVE2DIFF_ENGINE") || undefined),
    devices,
    slots: intFlag("slots", values.slots, cuda ? 8 : 4, 1),
    size: values.size ? parseSide("size", values.size) : cuda ? 512 : 64,
    threads,
    id: values.id,
    port,
    host: values.host ?? "127.0.0.1",
    heartbeatMs,
    idleMs,
    drainMs,
    quiet: values.quiet,
  };
}

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(USAGE); // before any flag check or library probe
    Deno.exit(0);
  }
  let flags: WorkerFlags;
  try {
    flags = parseWorkerFlags(Deno.args);
  } catch (e) {
    exitWithUsage(e, USAGE);
  }
  const log = flags.quiet ? undefined : (line: string) => console.error(`[worker] ${line}`);
  try {
    const { slots, size } = flags;
    const pool = flags.engine === "echo"
      ? new DevicePool(flags.devices.map((_, i) => new Device(`echo:${i}`, new EchoHost(), slots)))
      : await DevicePool.load(flags.devices, { engine: flags.engine, slotsPerDevice: slots, threads: flags.threads });
    const worker = await createWorker({
      nats: flags.nats,
      pool,
      width: size,
      height: size,
      id: flags.id,
      heartbeatMs: flags.heartbeatMs,
      sessionIdleMs: flags.idleMs,
      drainMs: flags.drainMs,
      log,
    });
    let http: Deno.HttpServer | null = null;
    if (flags.port !== undefined) {
      http = Deno.serve({
        hostname: flags.host,
        port: flags.port,
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
