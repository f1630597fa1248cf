/**
 * Moves checkpoint tensors into a native {@linkcode TensorMap}, one tensor at a time, so only one
 * tensor's bytes are in JS memory at once (checkpoints can be several GB).
 *
 * @module
 */

import { CheckpointError, openCheckpoint } from "./formats/mod.ts";
import type { TensorMap } from "./native.ts";

/** Options of {@linkcode loadCheckpointInto}. */
export interface LoadCheckpointOptions {
  /** Maps a file key to the model key, or null to skip the tensor. @default identity */
  rename?: (name: string) => string | null;
}

/**
 * Copies every (renamed) tensor of a safetensors or torch checkpoint into `map`.
 * Returns the model keys that were added.
 */
export async function loadCheckpointInto(
  map: TensorMap,
  path: string,
  options: LoadCheckpointOptions = {},
): Promise<string[]> {
  using file = await openCheckpoint(path);
  const added: string[] = [];
  for (const name of file.names) {
    const key = options.rename ? options.rename(name) : name;
    if (key === null) continue;
    // The readers already refuse such names; a rename could still produce one. The native map keys
    // by UTF-8 bytes, so a NUL would cut the name and an unpaired surrogate would merge two names.
    if (typeof key !== "string" || key.includes("\0") || !key.isWellFormed()) {
      throw new CheckpointError(
        `Checkpoint "${path}": tensor ${JSON.stringify(name)} maps to a name with a NUL or an unpaired surrogate`,
      );
    }
    map.set(key, await file.read(name));
    added.push(key);
  }
  return added;
}
