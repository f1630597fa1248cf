/**
 * Replays the fuzzers' saved findings (tests/_fixtures/fuzz/<target>/*.bin) and every target's seed
 * inputs through the same runners `deno task fuzz` uses: each must end in success or the target's
 * typed error, within the fuzzer's time limit and memory bound for its size. Seeds must read without
 * error, which keeps the runners themselves honest.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FINDINGS_DIR, memoryBound, timeLimitMs } from "../scripts/fuzz.ts";
import { loadSeeds, TARGET_NAMES, type TargetName, TARGETS } from "../scripts/fuzz/targets.ts";

async function savedFindings(target: TargetName): Promise<[string, Uint8Array][]> {
  const out: [string, Uint8Array][] = [];
  try {
    for await (const e of Deno.readDir(join(FINDINGS_DIR, target))) {
      if (e.name.endsWith(".bin")) out.push([e.name, await Deno.readFile(join(FINDINGS_DIR, target, e.name))]);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort(([a], [b]) => (a < b ? -1 : 1));
}

/** Runs one input; returns "ok" or "refused", failing on anything else or on exceeding the bounds. */
async function runBounded(target: TargetName, name: string, input: Uint8Array, scratch: string): Promise<string> {
  const t = TARGETS[target];
  const rss0 = Deno.memoryUsage().rss;
  const t0 = performance.now();
  let outcome = "ok";
  try {
    await t.run(input, scratch);
  } catch (e) {
    if (!t.expected(e)) assert.fail(`${target}/${name}: untyped ${(e as Error)?.name}: ${(e as Error)?.message}`);
    outcome = "refused";
  }
  const ms = performance.now() - t0;
  const grown = Deno.memoryUsage().rss - rss0;
  assert.ok(ms < timeLimitMs(input.length), `${target}/${name}: ${ms.toFixed(0)} ms for ${input.length} bytes`);
  assert.ok(grown < memoryBound(input.length), `${target}/${name}: RSS grew ${(grown / 2 ** 20).toFixed(0)} MiB`);
  return outcome;
}

for (const target of TARGET_NAMES) {
  Deno.test(`fuzz ${target}: seeds read cleanly, saved findings end in typed errors within bounds`, async () => {
    const scratch = await Deno.makeTempFile({ prefix: `l2d_fuzz_replay_${target}_` });
    try {
      const seeds = await loadSeeds(target);
      assert.ok(seeds.length > 0);
      for (const [i, seed] of seeds.entries()) {
        // The hostile generated seeds (amplification fixtures) may be refused; the rest must read.
        const outcome = await runBounded(target, `seed ${i}`, seed, scratch);
        if (target !== "pickle") assert.equal(outcome, "ok", `${target} seed ${i} should read`);
      }
      for (const [name, input] of await savedFindings(target)) await runBounded(target, name, input, scratch);
    } finally {
      await Deno.remove(scratch);
    }
  });
}
