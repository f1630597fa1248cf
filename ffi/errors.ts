/**
 * Typed errors of the native core. Every non-zero `l2d_status` becomes an {@linkcode EngineError}
 * whose `code` names the status and whose message is the library's last-error text.
 *
 * @module
 */

/** Status codes of `l2d.h`, by name. */
export const STATUS_CODES = {
  0: "OK",
  1: "INVALID_ARGUMENT",
  2: "NOT_FOUND",
  3: "FORMAT",
  4: "UNSUPPORTED",
  5: "OUT_OF_MEMORY",
  6: "BACKEND",
  7: "INTERNAL",
} as const;

/** Name of a native status code. */
export type EngineErrorCode =
  | (typeof STATUS_CODES)[keyof typeof STATUS_CODES]
  | "CLOSED"
  | "BUSY"
  | "LIBRARY";

/**
 * An error reported by the native core (or by the TS layer about a native resource).
 *
 * @example
 * ```ts
 * import { EngineError } from "./errors.ts";
 * const e = new EngineError("FORMAT", "Cannot load weights: tensor \"x\" has the wrong shape");
 * console.assert(e.code === "FORMAT" && e.name === "EngineError");
 * ```
 */
export class EngineError extends Error {
  /** Which kind of failure (the native status name, or CLOSED/BUSY/LIBRARY from the TS layer). */
  readonly code: EngineErrorCode;
  /** Always "EngineError". */
  override name = "EngineError";

  /** Creates an error with a code and a message. */
  constructor(code: EngineErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
