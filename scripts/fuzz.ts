/**
 * Mutation fuzzer for the TypeScript readers (safetensors, zip, pickle, torch checkpoints, engine
 * files), seeded from the golden model files (generated seeds when they are absent).
 *
 * Each input must end in success or the target's typed error (CheckpointError / EngineFileError),
 * within a time limit and a memory bound that grows with the input's size. Inputs run in a child
 * process (V8 heap capped) so a hang or an out-of-memory death is observed from outside; input `k`
 * is a pure function of (seed, k, seed files), so the parent regenerates whatever killed the child.
 * Findings are saved to `tests/_fixtures/fuzz/<target>/`, which `tests/fuzz_regressions_test.ts`
 * replays on every test run. At the end, `scripts/fuzz_native.sh <seconds>` (the native fuzz
 * targets) runs too when it exists and clang is installed.
 *
 * Usage:
 *   deno task fuzz --minutes 10                 # every target, time split evenly
 *   deno task fuzz --seconds 60 --target pickle # bounded run (CI)
 *   options: --target a,b  --seed N  --no-native  --native-seconds N
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { inputRng } from "./fuzz/mutate.ts";
import { loadSeeds, TARGET_NAMES, type TargetName, TARGETS } from "./fuzz/targets.ts";

const ROOT = join(dirname(fromFileUrl(import.meta.url)), "..");
/** Where findings are saved (replayed by tests/fuzz_regressions_test.ts). */
export const FINDINGS_DIR = join(ROOT, "tests", "_fixtures", "fuzz");
/** A child that prints nothing for this long is hung on its current input. */
const HANG_SECONDS = 10;
/** V8 heap of a child: far above what any bounded input needs, far below the machine. */
const CHILD_HEAP_MIB = 1024;
/** A child whose RSS passes this restarts (after reporting the input that got it there). */
const CHILD_MAX_RSS = 2048 * 1024 * 1024;

/** Time limit of one input: 2 s plus 1 s per MiB. */
export function timeLimitMs(size: number): number {
  return 2000 + size / 1024;
}

/** Memory bound of one input (RSS growth while it ran): 128 MiB plus 16 bytes per input byte. */
export function memoryBound(size: number): number {
  return 128 * 1024 * 1024 + 16 * size;
}

const BUCKETS = [[1024, "<1 KiB"], [65536, "<64 KiB"], [1 << 20, "<1 MiB"], [1 << 24, "<16 MiB"], [
  Infinity,
  ">=16 MiB",
]] as const;

interface BucketStats {
  inputs: number;
  maxMs: number;
  maxRssGrowthMiB: number;
}

interface ChildStats {
  inputs: number;
  ok: number;
  refused: number;
  peakRssMiB: number;
  buckets: Record<string, BucketStats>;
}

/** Picks seed files, big ones less often (each input copies its seed). */
function makeGenerator(seeds: Uint8Array[], target: TargetName, seed: number) {
  const weights = seeds.map((s) => (s.length > 1 << 20 ? 0.15 : 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const t = TARGETS[target];
  return (k: number): Uint8Array => {
    const rng = inputRng(seed, k);
    let x = (rng.u32() / 2 ** 32) * total, i = 0;
    while (i < seeds.length - 1 && x >= weights[i]!) x -= weights[i++]!;
    let input = t.mutate(seeds[i]!, rng, seeds);
    if (rng.chance(0.3)) input = t.mutate(input, rng, seeds);
    return input;
  };
}

/** Saves a finding; returns its path (named by content, so repeats overwrite). */
async function saveFinding(target: TargetName, kind: string, input: Uint8Array, detail: string): Promise<string> {
  const dir = join(FINDINGS_DIR, target);
  await Deno.mkdir(dir, { recursive: true });
  const name = `${kind}-${createHash("sha256").update(input).digest("hex").slice(0, 12)}`;
  await Deno.writeFile(join(dir, `${name}.bin`), input);
  await Deno.writeTextFile(join(dir, `${name}.txt`), `${detail}\n`);
  return join(dir, `${name}.bin`);
}

// ---------------------------------------------------------------------------------------------
// Child: runs inputs from..., printing "R k" before each, "F kind k detail" per finding, "STATS json" at the end.

async function child(target: TargetName, seed: number, from: number, seconds: number): Promise<void> {
  const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
  const seeds = await loadSeeds(target);
  const gen = makeGenerator(seeds, target, seed);
  const t = TARGETS[target];
  const scratch = await Deno.makeTempFile({ prefix: `l2d_fuzz_${target}_` });
  const stats: ChildStats = { inputs: 0, ok: 0, refused: 0, peakRssMiB: 0, buckets: {} };
  const end = performance.now() + seconds * 1000;
  let reported = performance.now();
  try {
    for (let k = from; performance.now() < end; k++) {
      // Cumulative snapshots: a child that dies later still leaves its counts with the parent.
      if (performance.now() - reported > 1000) {
        out(`STATS ${JSON.stringify(stats)}`);
        reported = performance.now();
      }
      const input = gen(k);
      out(`R ${k}`);
      const rss0 = Deno.memoryUsage().rss;
      const t0 = performance.now();
      try {
        await t.run(input, scratch);
        stats.ok++;
      } catch (e) {
        if (t.expected(e)) stats.refused++;
        else {
          const detail = `${(e as Error)?.name}: ${(e as Error)?.message}`.slice(0, 500);
          await saveFinding(target, "untyped", input, detail);
          out(`F untyped ${k} ${detail.replaceAll("\n", " ")}`);
        }
      }
      const ms = performance.now() - t0;
      const rss = Deno.memoryUsage().rss;
      stats.inputs++;
      stats.peakRssMiB = Math.max(stats.peakRssMiB, rss / 2 ** 20);
      const bucket = BUCKETS.find(([max]) => input.length < max)![1];
      const b = stats.buckets[bucket] ??= { inputs: 0, maxMs: 0, maxRssGrowthMiB: 0 };
      b.inputs++;
      b.maxMs = Math.max(b.maxMs, ms);
      b.maxRssGrowthMiB = Math.max(b.maxRssGrowthMiB, (rss - rss0) / 2 ** 20);
      if (ms > timeLimitMs(input.length)) {
        await saveFinding(target, "slow", input, `${ms.toFixed(0)} ms for ${input.length} bytes`);
        out(`F slow ${k} ${ms.toFixed(0)} ms for ${input.length} bytes`);
      }
      if (rss - rss0 > memoryBound(input.length)) {
        const detail = `RSS grew ${((rss - rss0) / 2 ** 20).toFixed(0)} MiB for ${input.length} bytes`;
        await saveFinding(target, "memory", input, detail);
        out(`F memory ${k} ${detail}`);
      }
      if (rss > CHILD_MAX_RSS) {
        out(`STATS ${JSON.stringify(stats)}`);
        out(`RESTART ${k + 1}`);
        return;
      }
    }
    out(`STATS ${JSON.stringify(stats)}`);
    out("END");
  } finally {
    await Deno.remove(scratch).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: runs children per target, turning hangs and deaths into saved findings.

interface TargetReport extends ChildStats {
  target: TargetName;
  findings: string[];
  seeds: number;
}

function merge(into: ChildStats, s: ChildStats): void {
  into.inputs += s.inputs;
  into.ok += s.ok;
  into.refused += s.refused;
  into.peakRssMiB = Math.max(into.peakRssMiB, s.peakRssMiB);
  for (const [k, b] of Object.entries(s.buckets)) {
    const m = into.buckets[k] ??= { inputs: 0, maxMs: 0, maxRssGrowthMiB: 0 };
    m.inputs += b.inputs;
    m.maxMs = Math.max(m.maxMs, b.maxMs);
    m.maxRssGrowthMiB = Math.max(m.maxRssGrowthMiB, b.maxRssGrowthMiB);
  }
}

async function fuzzTarget(target: TargetName, seed: number, seconds: number): Promise<TargetReport> {
  const seeds = await loadSeeds(target);
  const gen = makeGenerator(seeds, target, seed);
  const report: TargetReport = {
    target,
    findings: [],
    seeds: seeds.length,
    inputs: 0,
    ok: 0,
    refused: 0,
    peakRssMiB: 0,
    buckets: {},
  };
  const end = performance.now() + seconds * 1000;
  let from = 0;
  while (performance.now() < end - 500) {
    const left = Math.max(1, Math.round((end - performance.now()) / 1000));
    const proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--v8-flags=--max-old-space-size=${CHILD_HEAP_MIB}`,
        fromFileUrl(import.meta.url),
        "--child",
        `--target=${target}`,
        `--seed=${seed}`,
        `--from=${from}`,
        `--seconds=${left}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let last = from, lastAt = performance.now(), done = false, restartAt: number | null = null, hung = false;
    let stats: ChildStats | null = null;
    const watchdog = setInterval(() => {
      if (performance.now() - lastAt > HANG_SECONDS * 1000) {
        hung = true;
        try {
          proc.kill("SIGKILL");
        } catch { /* already gone */ }
      }
    }, 500);
    const stderr = new Response(proc.stderr).text();
    let buf = "";
    for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lastAt = performance.now();
        if (line.startsWith("R ")) last = Number(line.slice(2));
        else if (line.startsWith("F ")) {
          report.findings.push(line.slice(2));
          console.log(`  ${target}: finding ${line.slice(2)}`);
        } else if (line.startsWith("STATS ")) stats = JSON.parse(line.slice(6));
        else if (line === "END") done = true;
        else if (line.startsWith("RESTART ")) restartAt = Number(line.slice(8));
      }
    }
    const status = await proc.status;
    clearInterval(watchdog);
    const err = await stderr;
    if (stats) merge(report, stats);
    if (done) break;
    if (restartAt !== null) {
      from = restartAt;
      continue;
    }
    // The child died or hung on input `last`: regenerate it and save it.
    const input = gen(last);
    const kind = hung ? "hang" : "crash";
    const detail = hung
      ? `no progress for ${HANG_SECONDS} s on ${input.length} bytes`
      : `child exited with code ${status.code} signal ${status.signal}: ${err.slice(-400)}`;
    const path = await saveFinding(target, kind, input, detail);
    report.findings.push(`${kind} ${last} ${detail.split("\n")[0]}`);
    report.inputs += 1;
    console.log(`  ${target}: ${kind} at input ${last}, saved ${path}`);
    from = last + 1;
  }
  return report;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      child: { type: "boolean", default: false },
      target: { type: "string" },
      seed: { type: "string" },
      from: { type: "string", default: "0" },
      seconds: { type: "string" },
      minutes: { type: "string" },
      "no-native": { type: "boolean", default: false },
      "native-seconds": { type: "string" },
    },
  });
  const targets = (values.target ?? TARGET_NAMES.join(",")).split(",") as TargetName[];
  for (const t of targets) {
    if (!TARGET_NAMES.includes(t)) throw new RangeError(`Unknown target "${t}" (one of ${TARGET_NAMES.join(", ")})`);
  }
  const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes ?? "1") * 60;
  if (!(seconds > 0)) throw new RangeError("--seconds / --minutes must be positive");
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  if (values.child) {
    await child(targets[0]!, seed, Number(values.from), seconds);
    return 0;
  }
  console.log(`fuzz: seed ${seed}, ${seconds} s over ${targets.join(", ")}`);
  const reports: TargetReport[] = [];
  for (const t of targets) reports.push(await fuzzTarget(t, seed, seconds / targets.length));
  let findings = 0;
  for (const r of reports) {
    findings += r.findings.length;
    console.log(
      `${r.target}: ${r.inputs} inputs from ${r.seeds} seeds (${r.ok} read, ${r.refused} refused), ` +
        `${r.findings.length} findings, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`,
    );
    for (const [, bucket] of BUCKETS) {
      const b = r.buckets[bucket];
      if (!b) continue;
      console.log(
        `  ${bucket.padEnd(9)} ${String(b.inputs).padStart(7)} inputs, max ${b.maxMs.toFixed(0)} ms, ` +
          `max RSS growth ${b.maxRssGrowthMiB.toFixed(0)} MiB`,
      );
    }
  }
  const native = join(ROOT, "scripts", "fuzz_native.sh");
  let nativeOk = true;
  if (!values["no-native"]) {
    const exists = await Deno.stat(native).then(() => true, () => false);
    if (exists) {
      // The script finds its own clang (clang++-16, -15, -14, clang++) and exits 2 when none has libFuzzer.
      const s = values["native-seconds"] ?? String(Math.round(seconds));
      console.log(`fuzz: native targets (bash scripts/fuzz_native.sh ${s})`);
      const { code } = await new Deno.Command("bash", { args: [native, s], cwd: ROOT }).spawn().status;
      if (code === 2) console.log("fuzz: native targets skipped (no clang with libFuzzer)");
      nativeOk = code === 0 || code === 2;
    } else console.log("fuzz: native targets skipped (no scripts/fuzz_native.sh)");
  }
  console.log(findings ? `fuzz: ${findings} findings saved under ${FINDINGS_DIR}` : "fuzz: no findings");
  return findings || !nativeOk ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
