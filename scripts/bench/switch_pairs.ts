/**
 * `deno run -A scripts/bench/switch_pairs.ts --dir <dir> --out <file> A=0,A=1 B=simple,B=auto ...`
 *
 * Gathers the bench runs of switch pairs (scripts/gpu-check.sh runs `scripts/bench.ts` once per
 * setting, e.g. `L2D_KERNELS=simple` then `L2D_KERNELS=auto`, and keeps each summary as
 * `<dir>/<setting>.json`) into ONE JSON file: per pair, the ratios after / before
 * (scripts/bench/compare.ts) and both runs. A missing or broken run is reported, not fatal. The
 * comparison tables go to stderr.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compareSummaries, formatComparison, readSummary } from "./compare.ts";

/** One pair "NAME=before,NAME=after" split into its two settings. */
export function parsePair(text: string): { name: string; before: string; after: string } {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=([^,=]*),\1=([^,=]*)$/.exec(text);
  if (!m) throw new TypeError(`"${text}" is not a switch pair NAME=before,NAME=after`);
  return { name: m[1]!, before: m[2]!, after: m[3]! };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { dir: { type: "string" }, out: { type: "string" } },
    allowPositionals: true,
  });
  if (!values.dir || !values.out) throw new TypeError("--dir and --out are required");
  const pairs = [];
  for (const text of positionals) {
    const p = parsePair(text);
    const load = async (v: string) => {
      const path = `${values.dir}/${p.name}=${v}.json`;
      try {
        return { summary: await readSummary(path) };
      } catch (e) {
        return { error: e instanceof Error ? e.message : String(e) };
      }
    };
    const [a, b] = [await load(p.before), await load(p.after)];
    const entry: Record<string, unknown> = { switch: p.name, before: p.before, after: p.after };
    if (a.summary && b.summary) {
      const c = compareSummaries(a.summary, b.summary);
      entry.rows = c.rows;
      if (c.unmatched.length) entry.unmatched = c.unmatched;
      console.error(formatComparison(c.rows, [`${p.name}=${p.before}`, `${p.name}=${p.after}`]));
    } else {
      entry.error = [a.error, b.error].filter(Boolean).join("; ");
      console.error(`${p.name}: ${entry.error}`);
    }
    entry.before_run = a.summary ?? null;
    entry.after_run = b.summary ?? null;
    pairs.push(entry);
  }
  await Deno.writeTextFile(values.out, JSON.stringify({ bench_switch_pairs: pairs }) + "\n");
}
