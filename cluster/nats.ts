/**
 * The NATS connection shared by workers and gateways: the npm client `@nats-io/transport-node`
 * (the Deno transport is on JSR only; the Node one runs unchanged under Deno's Node compatibility),
 * reconnecting forever with a short wait so a lost node of a cluster is only a brief stall.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";

export type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";

/** Reactions to the connection's state. */
export interface NatsEvents {
  /** Reconnected (to the same or another node): subscriptions are back; messages of the gap are lost. */
  onReconnect?: () => void;
  /** Lost the node; reconnecting. */
  onDisconnect?: () => void;
  log?: (line: string) => void;
}

/** Connects to NATS: `servers` is a comma-separated list (every node of the cluster, ideally). */
export async function connectNats(
  servers: string | string[],
  name: string,
  events: NatsEvents = {},
): Promise<NatsConnection> {
  const log = events.log ?? (() => {});
  const list = (Array.isArray(servers) ? servers : servers.split(",")).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new RangeError("--nats: no server given");
  const nc = await connect({
    servers: list,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    pingInterval: 5_000,
    maxPingOut: 2,
    waitOnFirstConnect: true,
  });
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "reconnect") {
        log(`nats: reconnected to ${s.server}`);
        events.onReconnect?.();
      } else if (s.type === "disconnect") {
        log(`nats: disconnected from ${s.server}`);
        events.onDisconnect?.();
      }
    }
  })().catch(() => {});
  return nc;
}

/** Largest message the connected server accepts (its `max_payload`). */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1024 * 1024;
}
