/**
 * The one error type of the checkpoint readers, so callers can tell a bad or hostile file apart
 * from a programming error.
 *
 * @module
 */

/** A checkpoint file is malformed, truncated, unsupported or not allowed (e.g. unsafe pickle globals). */
export class CheckpointError extends Error {
  /** Always "CheckpointError". */
  override name = "CheckpointError";
}
