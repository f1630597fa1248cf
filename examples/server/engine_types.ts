/**
 * The part of an {@linkcode Engine} the server uses. Any object of this shape can serve (the tests
 * use an engine with a known, controllable cost to check scheduling and admission).
 *
 * @module
 */

import type { Engine, Frame, Stream, StreamOptions } from "../../mod.ts";

/** The stream calls the server makes. */
export type ServerStream = Pick<Stream, "width" | "height" | "steps" | "latency" | "setPrompt" | "close"> & {
  push(frame: Frame): Promise<Frame | null>;
};

/** The engine calls and fields the server uses. */
export type ServerEngine = Pick<Engine, "device" | "synthetic" | "notice"> & {
  createStream(options: StreamOptions): Promise<ServerStream>;
};
