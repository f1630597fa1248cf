/**
 * Runs a gateway: `deno task gateway --nats nats://a:4222,nats://b:4222 [--port 8000]
 * [--host 0.0.0.0]`. Run as many as needed behind an HTTP load balancer (WebSocket upgrades
 * allowed); they share nothing but NATS.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { exitWithUsage, intFlag, natsServerList, stopOnSignals } from "./cli.ts";
import { createGateway } from "./gateway.ts";

const USAGE = `Usage: deno task gateway --nats <urls> [options]
  --nats <urls>         NATS servers, comma-separated (default $NATS_URL or nats://127.0.0.1:4222)
  --port <n>            port (default $PORT or 8000; 0 picks a free one)
  --host <addr>         address to listen on (default 127.0.0.1)
  --max-clients <n>     clients on this gateway (default 1000)
  --keep-ms <n>         keep-alive period towards workers (default 1000)
  --id <id>             gateway id (default a random UUID)
  --quiet               no log lines`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nats: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "max-clients": { type: "string" },
      "keep-ms": { type: "string" },
      id: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const log = values.quiet ? undefined : (line: string) => console.error(`[gateway] ${line}`);
  try {
    // Every flag is checked before connecting.
    const port = intFlag("port", values.port ?? Deno.env.get("PORT"), 8000, 0, 65535);
    const maxClients = intFlag("max-clients", values["max-clients"], 1000, 1);
    const keepMs = intFlag("keep-ms", values["keep-ms"], 1000, 50);
    const gateway = await createGateway({ nats: natsServerList(values.nats), maxClients, keepMs, id: values.id, log });
    const http = Deno.serve({
      hostname: values.host ?? "127.0.0.1",
      port,
      onListen: ({ hostname, port }) => console.log(`live2diff gateway ${gateway.id}: http://${hostname}:${port}/`),
    }, gateway.app.fetch);
    stopOnSignals(async () => {
      await gateway.close();
      await http.shutdown();
    });
  } catch (e) {
    exitWithUsage(e, USAGE);
  }
}
