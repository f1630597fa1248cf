/**
 * `deno task download-models [--dir models] [--only sd15,live2diff,midas,taesd,lcm-lora] [--base-url URL] [--token T]`
 *
 * Fetches the files a user needs (see engines/download.ts and the models folder layout in engines/README.md)
 * with resume, sha256 verification and a progress bar. `--base-url` replaces the origin of every URL (a
 * mirror, or a loopback server in tests). `HF_TOKEN` is used when `--token` is not given.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_MODELS, downloadModels } from "../engines/download.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      dir: { type: "string", default: "models" },
      only: { type: "string" },
      "base-url": { type: "string" },
      token: { type: "string" },
      quiet: { type: "boolean", default: false },
      list: { type: "boolean", default: false },
    },
  });
  const groups = values.only?.split(",").filter(Boolean);
  const files = DEFAULT_MODELS.filter((f) => !groups || groups.includes(f.group));
  if (values.list) {
    for (const f of files) {
      console.log(`${f.group.padEnd(10)} ${f.dest.padEnd(56)} ${f.sha256 ?? "(sha256 recorded on first download)"}`);
    }
    Deno.exit(0);
  }
  try {
    const fetched = await downloadModels(values.dir, files, {
      baseUrl: values["base-url"],
      token: values.token ?? Deno.env.get("HF_TOKEN"),
      quiet: values.quiet,
    });
    console.log(JSON.stringify({ dir: values.dir, fetched, files: files.length }));
  } catch (e) {
    console.error(`download-models: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
