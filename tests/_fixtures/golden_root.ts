/**
 * Locates the golden root (the folder holding `cases/` and `models/`): env `L2D_GOLDEN_DIR`
 * when set, else `../../shared/golden` relative to the repository.
 *
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the golden root. */
export function goldenRoot(): string {
  const dir = Deno.env.get("L2D_GOLDEN_DIR");
  return dir ? resolve(dir) : fileURLToPath(new URL("../../../shared/golden", import.meta.url));
}

/** Absolute path of `rel` inside the golden root. */
export function goldenPath(rel: string): string {
  return resolve(goldenRoot(), rel);
}
