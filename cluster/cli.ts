/**
 * What the cluster's entry points (`worker_main.ts`, `gateway_main.ts`) share: the NATS address
 * default, integer flags, stopping once on SIGINT/SIGTERM, and the usage error exit.
 *
 * @module
 */

/** NATS servers from `--nats`, else `$NATS_URL`, else a local server. */
export function natsServers(flag: string | undefined): string {
  return flag ?? Deno.env.get("NATS_URL") ?? "nats://127.0.0.1:4222";
}

/**
 * The NATS server list of `--nats` (see {@linkcode natsServers}), checked without connecting: at
 * least one server, each `host:port` or a `nats://`/`tls://`/`ws://`/`wss://` URL with a host.
 * A RangeError naming `--nats` otherwise.
 */
export function natsServerList(flag: string | undefined): string[] {
  const text = natsServers(flag);
  const list = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new RangeError(`--nats: no server given in "${text}"`);
  for (const s of list) {
    let url: URL | null = null;
    try {
      url = new URL(s.includes("://") ? s : `nats://${s}`);
    } catch {
      url = null;
    }
    if (!url || !["nats:", "tls:", "ws:", "wss:"].includes(url.protocol) || !url.hostname) {
      throw new RangeError(`--nats: "${s}" is not host:port or a nats://, tls://, ws:// or wss:// URL`);
    }
  }
  return list;
}

/** An integer flag in `min..max` (`fallback` when absent); a RangeError naming the flag otherwise. */
export function intFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
    throw new RangeError(`--${name} must be an integer ${range}`);
  }
  return n;
}

/** Runs `stop` once on the first SIGINT or SIGTERM, then exits 0. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const once = async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", once);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", once);
}

/** Prints a start-up error with the usage and exits 2. */
export function exitWithUsage(e: unknown, usage: string): never {
  console.error(`error: ${e instanceof Error ? e.message : e}\n\n${usage}`);
  Deno.exit(2);
}
