/**
 * Moves checkpoint tensors into a native {@linkcode TensorMap}, one tensor at a time, so only one
 * tensor's bytes are in JS memory at once (checkpoints can be several GB).
 *
 * @module
 */

import { openCheckpoint } from "./formats/mod.ts";
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
    map.set(key, await file.read(name));
    added.push(key);
  }
  return added;
}
