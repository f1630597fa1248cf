/**
 * A stand-in engine whose streams return each input frame unchanged (no warm-up, latency 0). It
 * measures what the transport costs (gateway hop, NATS) at sizes the CPU engine is too slow for,
 * and lets protocol tests run in milliseconds.
 *
 * @module
 */

import type { Frame } from "../mod.ts";
import type { LiveStream, LiveStreamOptions, StreamHost } from "./devices.ts";

class EchoStream implements LiveStream {
  readonly latency = 0;
  constructor(readonly width: number, readonly height: number) {}

  push(frame: Frame): Promise<Frame | null> {
    const channels = frame.channels ?? (frame.data.byteLength === frame.width * frame.height * 4 ? 4 : 3);
    if (channels === 3) return Promise.resolve({ ...frame, channels: 3 });
    const rgb = new Uint8Array(frame.width * frame.height * 3);
    for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) rgb.set(frame.data.subarray(i, i + 3), j);
    return Promise.resolve({ data: rgb, width: frame.width, height: frame.height, channels: 3 });
  }

  setPrompt(_prompt: string): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}

/** An engine stand-in whose streams echo their input. */
export class EchoHost implements StreamHost {
  readonly device = "echo";
  readonly synthetic = true;
  readonly notice = "echo stand-in: outputs are the inputs";

  createStream(options: LiveStreamOptions): Promise<LiveStream> {
    return Promise.resolve(new EchoStream(options.width, options.height));
  }

  stats(): { bytes_in_use: number } {
    return { bytes_in_use: 0 };
  }

  close(): void {}
}
