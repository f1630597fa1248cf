/**
 * Where the golden vectors are read from: `L2D_GOLDEN_DIR` when set (another golden root, e.g. a
 * held-back set), else the public set shipped in the repository (`golden/`), unpacked on first use
 * into `$LIVE2DIFF_CACHE_DIR/golden-<hash>` (default `~/.cache/live2diff`). The hash is that of
 * `golden/pack.json`, which lists every file's sha256: a changed set gets a new folder. Unpacking
 * writes a temporary folder and renames it into place, so concurrent first uses never see a
 * half-written set (the loser of the race removes its own copy).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PACK_JSON, type PackManifest, sha256, unpackSet } from "./packed_set.ts";

/** The repository's compact copy of the public golden set. */
export const REPO_GOLDEN = fileURLToPath(new URL("../../golden", import.meta.url));

/** The cache folder shared with the default engine (`$LIVE2DIFF_CACHE_DIR`, default `~/.cache/live2diff`). */
function cacheDir(): string {
  return Deno.env.get("LIVE2DIFF_CACHE_DIR") ?? join(Deno.env.get("HOME") ?? ".", ".cache", "live2diff");
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/**
 * Unpacks the repository's golden set into the cache (once per version of the set) and returns the
 * folder: a golden root holding `README.md`, `cases/` and `models/`.
 */
export async function unpackRepoGolden(): Promise<string> {
  const text = await Deno.readFile(join(REPO_GOLDEN, PACK_JSON)).catch((e) => {
    throw new Error(`Cannot read the repository's golden set (${join(REPO_GOLDEN, PACK_JSON)}): ${e}`);
  });
  const dest = join(cacheDir(), `golden-${sha256(text).slice(0, 16)}`);
  // The marker is written last, inside the temporary folder: a folder with it is complete.
  const marker = join(dest, ".complete");
  if (await exists(marker)) return dest;
  await Deno.mkdir(cacheDir(), { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: cacheDir(), prefix: `.golden-unpacking-` });
  try {
    const manifest: PackManifest = JSON.parse(new TextDecoder().decode(text));
    await unpackSet(REPO_GOLDEN, manifest, tmp);
    await Deno.writeTextFile(join(tmp, ".complete"), "");
    try {
      await Deno.rename(tmp, dest);
    } catch (e) {
      // Another process finished first (rename onto a non-empty folder fails): use its copy.
      if (!(await exists(marker))) {
        throw new Error(`Cannot move the unpacked golden set to ${dest} (remove that folder if it is left over): ${e}`);
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return dest;
}

/** The golden root: `L2D_GOLDEN_DIR` when set, else the repository's set (unpacked on first use). */
export async function goldenRoot(): Promise<string> {
  const env = Deno.env.get("L2D_GOLDEN_DIR");
  return env ? resolve(env) : await unpackRepoGolden();
}
