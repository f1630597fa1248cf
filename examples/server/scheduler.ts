/**
 * Fair sharing of one engine between clients: start-time fair queueing by engine time. Every
 * client with work waiting is eligible; the one that has used the least engine time runs next (one
 * native call), then is charged what that call cost. A client that becomes busy again after a
 * pause starts at the current virtual time, so being idle earns no credit to starve others later.
 *
 * With equal costs this is plain round-robin; cheap calls (warm-up frames the engine only buffers)
 * cost almost nothing, so they do not make a newcomer wait a full round each.
 *
 * @module
 */

/** Runs one unit of a client's work; resolves to the engine time (ms) to charge it. */
export type StepFn<C> = (client: C) => Promise<number>;

/** The scheduler. One call runs at a time (the engine's native handles are not re-entrant). */
export class FairScheduler<C> {
  readonly #hasWork: (client: C) => boolean;
  readonly #step: StepFn<C>;
  /** Virtual start time of each eligible client (engine ms used, offset by when it became eligible). */
  readonly #eligible = new Map<C, number>();
  /** Virtual time of clients that ran out of work (kept so a quick return is charged fairly). */
  readonly #resting = new Map<C, number>();
  /** Work that must not overlap a call (stream releases), run between calls. */
  readonly #chores: (() => void)[] = [];
  #now = 0;
  #running = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(hasWork: (client: C) => boolean, step: StepFn<C>) {
    this.#hasWork = hasWork;
    this.#step = step;
  }

  /** Clients with work waiting (eligible to run). */
  get waiting(): number {
    return this.#eligible.size;
  }

  /** True while a call is running. */
  get busy(): boolean {
    return this.#running;
  }

  /** Tells the scheduler `client` may have new work. */
  wake(client: C): void {
    if (!this.#eligible.has(client)) {
      const rested = this.#resting.get(client) ?? 0;
      this.#resting.delete(client);
      this.#eligible.set(client, Math.max(rested, this.#now));
    }
    if (!this.#running) {
      this.#running = true;
      this.#loop = this.#run();
    }
  }

  /**
   * Runs `chore` when no call is running: now when idle, else right after the call in flight and
   * before the next one. Native handles of one engine are not re-entrant, so releasing a stream
   * (freeing its buffers on the shared backend) must be ordered with the calls like any other.
   * A throwing chore is reported to `onError` (never stops the calls).
   */
  exclusive(chore: () => void, onError: (e: unknown) => void = () => {}): void {
    const guarded = () => {
      try {
        chore();
      } catch (e) {
        onError(e);
      }
    };
    if (this.#running) this.#chores.push(guarded);
    else guarded();
  }

  /** Forgets `client` (it left). A call already running for it finishes. */
  remove(client: C): void {
    this.#eligible.delete(client);
    this.#resting.delete(client);
  }

  /** Resolves when no call is running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#loop;
  }

  async #run() {
    try {
      while (true) {
        // Between calls: no call runs now, and none starts before these are done.
        for (let chore = this.#chores.shift(); chore; chore = this.#chores.shift()) chore();
        let next: C | undefined, best = Infinity;
        for (const [client, start] of this.#eligible) {
          if (!this.#hasWork(client)) {
            this.#eligible.delete(client);
            this.#resting.set(client, start);
          } else if (start < best) {
            best = start;
            next = client;
          }
        }
        // No await between this check and clearing #running (finally runs in the same turn), so a
        // wake() that comes right after always starts a new loop.
        if (next === undefined) return;
        this.#now = best;
        const cost = Math.max(0, await this.#step(next).catch(() => 0)); // the step reports its own errors
        const start = this.#eligible.get(next);
        if (start !== undefined) this.#eligible.set(next, start + cost);
        else if (this.#resting.has(next)) this.#resting.set(next, this.#resting.get(next)! + cost);
      }
    } finally {
      this.#running = false;
    }
  }
}
