/**
 * A bounded pool of JPEG-decoding Workers (`jpeg_worker.ts`), so that decoding a big JPEG never
 * blocks the server's event loop (other clients' messages, pushes and outputs keep flowing).
 *
 * - At most `workers` decodes run at once; further requests wait in FIFO order (the server keeps
 *   at most one per client, and the queue is capped anyway).
 * - A decode that runs past `timeoutMs` (a hostile JPEG within the size limits, e.g. thousands of
 *   progressive scans) terminates its worker and fails. The clock starts when the worker has
 *   loaded, so a slow start on a busy machine is not mistaken for a slow decode.
 * - Workers idle for `idleMs` are terminated, so the memory of a burst of big JPEGs is given back.
 * - A worker is also replaced once it has decoded `recycleAfterBytes` (by the decoder's estimated
 *   allocations): jpeg-js allocates an Int32Array per 8x8 block, whose off-heap memory V8 collects
 *   late, so a busy worker's footprint would otherwise grow to several decodes' worth.
 *
 * @module
 */

import type { DecodeReply, DecodeRequest } from "./jpeg_worker.ts";

/** Mirrors `READY_ID` of jpeg_worker.ts (not imported: that module only runs inside a Worker). */
const READY_ID = 0;

/** Options of {@linkcode JpegDecoderPool}. */
export interface JpegPoolOptions {
  /** Decodes running at once (one Worker each). @default 2 */
  workers?: number;
  /** Longest decode before its worker is killed. @default 5000 */
  timeoutMs?: number;
  /** A worker idle this long is terminated (frees its heap). @default 5000 */
  idleMs?: number;
  /** Most requests waiting for a worker; more are refused at once. @default 256 */
  maxQueue?: number;
  /** A worker is replaced after decoding this many (estimated) bytes. @default 128 MiB */
  recycleAfterBytes?: number;
}

/** Limits one decode runs under (passed to jpeg-js as a second line of defence). */
export interface DecodeLimits {
  maxMemoryMB: number;
  maxMegapixels: number;
  /** What the decode is expected to allocate (counts toward `recycleAfterBytes`). @default 0 */
  estimateBytes?: number;
}

/** A decoded JPEG (RGB, 3 bytes per pixel). */
export interface DecodedJpeg {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A decode that failed: the decoder's message, a timeout, a full queue or a closed pool. */
export class JpegDecodeError extends Error {
  override name = "JpegDecodeError";
}

interface Job {
  request: DecodeRequest;
  estimateBytes: number;
  resolve: (img: DecodedJpeg) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Set once the worker has loaded; a job given before waits for it. */
  ready: boolean;
  job: Job | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Estimated bytes decoded so far. */
  used: number;
}

let nextId = 1;

/** The pool. Create one per server; {@linkcode close} it when the server stops. */
export class JpegDecoderPool {
  readonly #max: number;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  readonly #maxQueue: number;
  readonly #recycleAfter: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #closed = false;
  /** Decodes completed, failed and timed out (for metrics). */
  readonly stats = { decoded: 0, failed: 0, timedOut: 0, workersStarted: 0, recycled: 0 };

  constructor(options: JpegPoolOptions = {}) {
    this.#max = Math.max(1, options.workers ?? 2);
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#idleMs = options.idleMs ?? 5000;
    this.#maxQueue = options.maxQueue ?? 256;
    this.#recycleAfter = options.recycleAfterBytes ?? 128 * 2 ** 20;
  }

  /** Workers alive now (busy or idle). */
  get workers(): number {
    return this.#slots.length;
  }

  /** Requests waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Decodes `jpeg` (its buffer is transferred to the worker: do not use it afterwards). */
  decode(jpeg: Uint8Array, limits: DecodeLimits): Promise<DecodedJpeg> {
    if (this.#closed) return Promise.reject(new JpegDecodeError("the decoder pool is closed"));
    if (this.#queue.length >= this.#maxQueue) {
      return Promise.reject(new JpegDecodeError("too many JPEGs waiting to be decoded"));
    }
    const { promise, resolve, reject } = Promise.withResolvers<DecodedJpeg>();
    const { estimateBytes = 0, maxMemoryMB, maxMegapixels } = limits;
    this.#queue.push({ request: { id: nextId++, jpeg, maxMemoryMB, maxMegapixels }, estimateBytes, resolve, reject });
    this.#dispatch();
    return promise;
  }

  /** Terminates every worker and fails waiting requests. */
  close(): void {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(new JpegDecodeError("the decoder pool is closed"));
    for (const slot of this.#slots.splice(0)) {
      clearTimeout(slot.timer);
      slot.worker.terminate();
      slot.job?.reject(new JpegDecodeError("the decoder pool is closed"));
    }
  }

  #dispatch() {
    while (this.#queue.length) {
      let slot = this.#slots.find((s) => !s.job);
      if (!slot) {
        if (this.#slots.length >= this.#max) return;
        slot = this.#spawn();
      }
      this.#run(slot, this.#queue.shift()!);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(new URL("./jpeg_worker.ts", import.meta.url).href, { type: "module" });
    const slot: Slot = { worker, ready: false, job: null, timer: undefined, used: 0 };
    this.stats.workersStarted++;
    worker.onmessage = (evt: MessageEvent<DecodeReply>) => {
      if (evt.data.id === READY_ID) {
        slot.ready = true;
        if (slot.job) this.#post(slot, slot.job);
        return;
      }
      const job = slot.job;
      if (!job || evt.data.id !== job.request.id) return;
      const reply = evt.data;
      slot.used += job.estimateBytes;
      this.#finish(slot);
      if (reply.ok) {
        this.stats.decoded++;
        job.resolve({ width: reply.width, height: reply.height, data: reply.data });
      } else {
        this.stats.failed++;
        job.reject(new JpegDecodeError(reply.error));
      }
    };
    worker.onerror = (evt) => { // the worker died (out of memory, ...): replace it
      evt.preventDefault();
      const job = slot.job;
      this.#kill(slot);
      this.stats.failed++;
      job?.reject(new JpegDecodeError(`the decoder failed: ${evt.message}`));
    };
    this.#slots.push(slot);
    return slot;
  }

  #run(slot: Slot, job: Job) {
    clearTimeout(slot.timer);
    slot.job = job;
    if (slot.ready) this.#post(slot, job);
  }

  /** Sends a job to a loaded worker and starts its decode clock. */
  #post(slot: Slot, job: Job) {
    slot.timer = setTimeout(() => {
      this.stats.timedOut++;
      this.#kill(slot);
      job.reject(new JpegDecodeError(`decoding took longer than ${this.#timeoutMs} ms`));
    }, this.#timeoutMs);
    slot.worker.postMessage(job.request, [job.request.jpeg.buffer as ArrayBuffer]);
  }

  /** Marks a slot idle, arms its idle timer and hands it the next request. */
  #finish(slot: Slot) {
    clearTimeout(slot.timer);
    slot.job = null;
    if (slot.used >= this.#recycleAfter) {
      this.stats.recycled++;
      this.#kill(slot); // a fresh worker takes the next request
      return;
    }
    slot.timer = setTimeout(() => this.#kill(slot), this.#idleMs);
    this.#dispatch();
  }

  #kill(slot: Slot) {
    clearTimeout(slot.timer);
    slot.worker.terminate();
    slot.job = null;
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    this.#dispatch();
  }
}
