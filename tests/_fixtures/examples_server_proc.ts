/**
 * Runs the demo server (examples/server/app.ts) in its own process for tests that measure its
 * memory: `deno run -A examples_server_proc.ts '<ServerOptions JSON>'`. Prints `PORT <n>` once
 * listening on 127.0.0.1; exits on SIGTERM.
 *
 * @module
 */

import { Engine } from "../../mod.ts";
import { createLive2DiffServer } from "../../examples/server/app.ts";

const options = JSON.parse(Deno.args[0] ?? "{}");
const engine = await Engine.loadDefault({ device: "cpu" });
const server = createLive2DiffServer({ ...options, engine });
const http = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log(`PORT ${port}`) },
  server.app.fetch,
);
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  await http.shutdown();
  Deno.exit(0);
});
