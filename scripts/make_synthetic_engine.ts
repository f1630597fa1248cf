/**
 * `deno task make-synthetic-engine --preset sd15|tiny [--target cpu|sm_XY] [--out path]`
 *
 * Writes an engine whose weights follow the golden README's Philox weight rule (see engines/synthetic.ts),
 * for benchmarks, full-shape tests and the demo without real weights. Default output:
 * `models/engines/synthetic-<preset>-<target>.l2de`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseTarget } from "../engines/format.ts";
import { makeSyntheticEngine, type SyntheticPreset } from "../engines/synthetic.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      preset: { type: "string", default: "tiny" },
      target: { type: "string", default: "cpu" },
      out: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  try {
    const preset = values.preset as SyntheticPreset;
    if (preset !== "tiny" && preset !== "sd15") throw new TypeError(`--preset must be tiny or sd15, got "${preset}"`);
    const target = parseTarget(values.target);
    const out = values.out ?? `models/engines/synthetic-${preset}-${target}.l2de`;
    await Deno.mkdir(out.replace(/\/[^/]*$/, "") || ".", { recursive: true });
    const r = await makeSyntheticEngine({
      preset,
      target,
      out,
      quiet: values.quiet,
    });
    console.log(JSON.stringify({
      engine: out,
      preset,
      target,
      bytes: r.bytes,
      tensors: r.header.tensors.length,
      seconds: Math.round(r.seconds * 100) / 100,
    }));
  } catch (e) {
    console.error(`make-synthetic-engine: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
