/**
 * Test helpers for the cluster (cluster/): real `nats-server` processes on free loopback ports
 * (one node, or a 3-node cluster), worker and gateway subprocesses, and their logs for failure
 * messages.
 *
 * @module
 */

import { join } from "node:path";

/** Install hint shown when `nats-server` is missing. */
export const NATS_HINT = "nats-server not found: install it (Debian/Ubuntu: apt-get install -y nats-server)";

/** True when `nats-server` runs. */
export async function hasNatsServer(): Promise<boolean> {
  try {
    const out = await new Deno.Command("nats-server", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (closed again; the race with other processes is accepted). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A child process with its merged output kept (bounded) for failure messages. */
export class Child {
  readonly lines: string[] = [];
  readonly #proc: Deno.ChildProcess;
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly status: Promise<Deno.CommandStatus>;

  constructor(readonly name: string, cmd: string, args: string[], env: Record<string, string> = {}) {
    this.#proc = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    this.status = this.#proc.status;
    this.#read(this.#proc.stdout);
    this.#read(this.#proc.stderr);
  }

  async #read(stream: ReadableStream<Uint8Array>) {
    let buf = "";
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.lines.push(line);
          if (this.lines.length > 400) this.lines.shift();
          for (const w of [...this.#waiters]) {
            const m = line.match(w.re);
            if (m) {
              this.#waiters.splice(this.#waiters.indexOf(w), 1);
              w.resolve(m);
            }
          }
        }
      }
    } catch { /* killed */ }
  }

  /** Waits for an output line matching `re` (also searching lines already seen). */
  waitFor(re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
    for (const l of this.lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line ${re} in ${ms} ms:\n${this.tail()}`)), ms);
      this.#waiters.push({ re, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      this.status.then(() => setTimeout(() => reject(new Error(`${this.name} exited:\n${this.tail()}`)), 50));
    });
  }

  /** The last lines of output. */
  tail(n = 30): string {
    return this.lines.slice(-n).map((l) => `  ${this.name}| ${l}`).join("\n");
  }

  /** Sends a signal (ignored when already gone). */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.#proc.kill(signal);
    } catch { /* already exited */ }
  }

  /** Kills (SIGKILL) and waits for the exit. */
  async stop(): Promise<void> {
    this.kill("SIGKILL");
    await this.status;
  }
}

/** NATS servers started for a test. */
export interface NatsCluster {
  /** Client URLs, one per node. */
  urls: string[];
  nodes: Child[];
  stop(): Promise<void>;
}

/** Starts `n` nats-server nodes (a cluster when n > 1), max_payload 8 MB unless given; waits until routed. */
export async function startNats(n: number, options: { maxPayload?: string } = {}): Promise<NatsCluster> {
  const dir = await Deno.makeTempDir({ prefix: "l2d-nats-" });
  const ports = Array.from({ length: n }, () => ({ client: freePort(), route: freePort(), monitor: freePort() }));
  const nodes: Child[] = [];
  try {
    for (const [i, p] of ports.entries()) {
      const routes = ports.filter((_, j) => j !== i).map((q) => `"nats-route://127.0.0.1:${q.route}"`);
      const conf = [
        `server_name: n${i}`,
        `listen: "127.0.0.1:${p.client}"`,
        `http: "127.0.0.1:${p.monitor}"`,
        `max_payload: ${options.maxPayload ?? "8MB"}`,
        n > 1 ? `cluster { name: l2d, listen: "127.0.0.1:${p.route}", routes: [${routes.join(", ")}] }` : "",
      ].join("\n");
      const file = join(dir, `n${i}.conf`);
      await Deno.writeTextFile(file, conf);
      nodes.push(new Child(`nats${i}`, "nats-server", ["-c", file]));
    }
    // Ready when every node listens and (in a cluster) routes to every other node.
    const deadline = Date.now() + 20_000;
    for (const p of ports) {
      while (true) {
        try {
          const r = await fetch(`http://127.0.0.1:${p.monitor}/routez`);
          const body = await r.json();
          if ((body.num_routes ?? 0) >= n - 1) break;
        } catch { /* not up yet */ }
        if (Date.now() > deadline) {
          throw new Error(`nats cluster did not form:\n${nodes.map((c) => c.tail()).join("\n")}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    for (const c of nodes) await c.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  return {
    urls: ports.map((p) => `nats://127.0.0.1:${p.client}`),
    nodes,
    async stop() {
      for (const c of nodes) await c.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

const ROOT = new URL("../../", import.meta.url).pathname;

/** Runs one of the cluster's entry points (`cluster/<script>`) as a subprocess with the project's config. */
function spawnMain(name: string, script: string, args: string[]): Child {
  return new Child(name, Deno.execPath(), [
    "run",
    "-A",
    "--config",
    join(ROOT, "deno.json"),
    join(ROOT, script),
    ...args,
  ]);
}

/** Starts `cluster/worker_main.ts` as a subprocess; resolves once it advertises itself. */
export async function spawnWorker(name: string, args: string[]): Promise<Child> {
  const child = spawnMain(name, "cluster/worker_main.ts", args);
  await child.waitFor(/^live2diff worker /);
  return child;
}

/** Starts `cluster/gateway_main.ts` as a subprocess; resolves with its port once it listens. */
export async function spawnGateway(name: string, args: string[]): Promise<{ child: Child; port: number }> {
  const child = spawnMain(name, "cluster/gateway_main.ts", ["--port", "0", ...args]);
  const m = await child.waitFor(/^live2diff gateway \S+: http:\/\/[^:]+:(\d+)\//);
  return { child, port: Number(m[1]) };
}
