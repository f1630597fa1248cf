/**
 * A gateway's view of the workers, rebuilt from their heartbeats (so any gateway can start or
 * die at any time: it holds nothing another cannot rebuild within a heartbeat). A worker silent
 * for `missed` heartbeat periods is taken as dead. While the gateway itself is cut off from NATS
 * nothing expires, and after a reconnect every worker gets a fresh period: a NATS outage is not a
 * worker death.
 *
 * @module
 */

import type { WorkerAdvert } from "./protocol.ts";

interface Entry {
  advert: WorkerAdvert;
  lastSeen: number;
}

/** Workers known from heartbeats. */
export class WorkerRegistry {
  readonly #workers = new Map<string, Entry>();
  #connected = true;

  /**
   * @param onExpire called once for a worker whose heartbeats stopped
   * @param missed heartbeat periods of silence after which a worker is dead
   */
  constructor(readonly onExpire: (id: string) => void, readonly missed = 3) {}

  /** Records a heartbeat (ignores malformed ones). */
  update(advert: WorkerAdvert, now = performance.now()): void {
    if (!advert || typeof advert.id !== "string" || !Array.isArray(advert.devices)) return;
    this.#workers.set(advert.id, { advert, lastSeen: now });
  }

  readonly #reserved = new Map<string, number>();

  /**
   * Counts a session being opened on a worker until the worker answers (its heartbeat, sent before
   * the answer, counts it from then on): a burst of new sessions spreads over the workers.
   * Returns the function that ends the reservation.
   */
  reserve(id: string): () => void {
    this.#reserved.set(id, (this.#reserved.get(id) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#reserved.get(id) ?? 1) - 1;
      if (n > 0) this.#reserved.set(id, n);
      else this.#reserved.delete(id);
    };
  }

  /** The gateway lost NATS: stop expiring workers. */
  disconnected(): void {
    this.#connected = false;
  }

  /** The gateway is back: every worker gets a fresh period to be heard from. */
  reconnected(now = performance.now()): void {
    this.#connected = true;
    for (const e of this.#workers.values()) e.lastSeen = now;
  }

  /** Drops workers silent too long, calling `onExpire` for each. */
  sweep(now = performance.now()): void {
    if (!this.#connected) return;
    for (const [id, e] of this.#workers) {
      if (now - e.lastSeen > e.advert.heartbeatMs * this.missed) {
        this.#workers.delete(id);
        this.onExpire(id);
      }
    }
  }

  /** True when a worker is known and alive. */
  has(id: string): boolean {
    return this.#workers.has(id);
  }

  /** The live workers' adverts, with reserved slots counted as used (on the freest devices). */
  all(): WorkerAdvert[] {
    return [...this.#workers.values()].map(({ advert }) => {
      const reserved = this.#reserved.get(advert.id) ?? 0;
      if (reserved === 0) return advert;
      const devices = advert.devices.map((d) => ({ ...d }));
      for (let i = 0; i < reserved; i++) {
        const d = devices.reduce((a, b) => (b.slots - b.used > a.slots - a.used ? b : a));
        d.used++;
      }
      return { ...advert, devices };
    });
  }
}
