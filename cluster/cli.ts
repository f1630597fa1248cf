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
