/**
 * The golden set for the GPU machine. The repository ships the public set compactly (`golden/`,
 * scripts/golden/packed_set.ts) and the working tree travels to the machine, so nothing has to be
 * packed separately any more; this script keeps the two steps scripts/gpu/prepare.sh and
 * scripts/gpu-check.sh call:
 *
 * - `pack [--golden dir] [--out .gpu/golden]`: checks here that the repository's copy reproduces the
 *   source set (`--golden`, default `L2D_GOLDEN_DIR` or ../shared/golden) bit for bit, then writes
 *   only a marker, `<out>/recipe.json` (what gpu-check.sh looks for).
 * - `unpack [--dir .gpu/golden]`: writes the whole golden set from the repository's copy into `dir`
 *   (Philox in TypeScript: no native library needed), every file checked against its sha256. The
 *   `.ckpt`/`.pt` files are the genuine torch zip files.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PACK_JSON, type PackManifest, unpackSet } from "../golden/packed_set.ts";
import { checkComplete } from "../golden/refresh.ts";
import { REPO_GOLDEN } from "../golden/root.ts";

const MARKER = "recipe.json";

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      golden: { type: "string" },
      out: { type: "string", default: ".gpu/golden" },
      dir: { type: "string", default: ".gpu/golden" },
    },
  });
  try {
    switch (positionals[0]) {
      case "pack": {
        const source = resolve(
          values.golden ?? Deno.env.get("L2D_GOLDEN_DIR") ??
            fileURLToPath(new URL("../../../shared/golden", import.meta.url)),
        );
        const problems = await checkComplete(REPO_GOLDEN, source);
        if (problems.length) {
          throw new Error(
            `golden/ does not reproduce ${source}: ${problems.join("; ")} (run deno task golden:refresh)`,
          );
        }
        const out = resolve(values.out);
        await Deno.remove(out, { recursive: true }).catch(() => {});
        await Deno.mkdir(out, { recursive: true });
        await Deno.writeTextFile(
          join(out, MARKER),
          JSON.stringify({ version: 2, note: "the set travels in the tree (golden/); unpack writes it here" }) + "\n",
        );
        console.error(`golden/ reproduces ${source} bit for bit; ${out} holds only a marker`);
        break;
      }
      case "unpack": {
        const dir = resolve(values.dir);
        const manifest: PackManifest = JSON.parse(await Deno.readTextFile(join(REPO_GOLDEN, PACK_JSON)));
        await unpackSet(REPO_GOLDEN, manifest, dir);
        console.error(`unpacked ${Object.keys(manifest.files).length} files into ${dir}`);
        break;
      }
      default:
        throw new TypeError("usage: golden_pack.ts pack|unpack [--golden dir] [--out dir] [--dir dir]");
    }
  } catch (e) {
    console.error(`golden_pack: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
