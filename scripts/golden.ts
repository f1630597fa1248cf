/**
 * `deno task golden [case-dir ...] [--device cpu|cuda] [--precision fp32|fp16] [--exclude name,...]`
 *
 * Runs golden cases (default: every case under the golden root's cases/) through the public API
 * and prints, per case and per output tensor, max abs error, relative L2 error and pass/fail. The
 * LAST line of stdout is one JSON object {"cases", "passed", "failed", "results"}; the exit code is
 * non-zero when anything fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { CaseRun, defaultGoldenRoot, readCaseJson, type RunOptions } from "./golden/framework.ts";
import { kindOf, loadRunner } from "./golden/runners.ts";
import { Context } from "../ffi/native.ts";

/** Summary of one case. */
export interface CaseSummary {
  case: string;
  dir: string;
  kind: string | null;
  passed: boolean;
  seconds: number;
  error?: string;
  tensors: CaseRun["results"];
}

/** Runs one case directory and returns its summary (never throws). */
export async function runCase(dir: string, options: RunOptions, log = console.log): Promise<CaseSummary> {
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 10) / 100;
  let name = dir.split("/").filter(Boolean).pop() ?? dir;
  // deno-lint-ignore no-explicit-any
  let json: any;
  try {
    json = await readCaseJson(dir);
    name = String(json.case ?? name);
  } catch (e) {
    return {
      case: name,
      dir,
      kind: null,
      passed: false,
      seconds: seconds(),
      error: `cannot read case.json: ${e}`,
      tensors: [],
    };
  }
  const kind = kindOf(name) ?? kindOf(dir.split("/").filter(Boolean).pop() ?? "") ?? null;
  using run = new CaseRun(dir, json, options);
  try {
    if (!kind) throw new Error(`unknown case kind "${name}"`);
    const runner = await loadRunner(kind);
    using ctx = Context.create(options.device, { precision: options.precision });
    await runner(run, ctx);
    if (run.results.length === 0) throw new Error("the runner compared no tensors");
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    log(`[${name}] FAILED: ${error}`);
    return { case: name, dir, kind, passed: false, seconds: seconds(), error, tensors: run.results };
  }
  for (const r of run.results) {
    const mark = r.pass ? "ok  " : "FAIL";
    log(
      `[${name}] ${mark} ${r.name.padEnd(34)} max_abs ${r.maxAbs.toExponential(2)}  rel_l2 ${
        Number.isNaN(r.relL2) ? "   -    " : r.relL2.toExponential(2)
      }  (${r.metric} <= ${r.bound.toExponential(1)})`,
    );
  }
  const passed = run.results.every((r) => r.pass);
  log(`[${name}] ${passed ? "PASSED" : "FAILED"} (${run.results.length} tensors, ${seconds()} s)`);
  return { case: name, dir, kind, passed, seconds: seconds(), tensors: run.results };
}

/** Every case directory under a golden root, sorted. */
export async function listCases(root?: string): Promise<string[]> {
  root ??= await defaultGoldenRoot();
  const dirs: string[] = [];
  for await (const e of Deno.readDir(join(root, "cases"))) {
    if (e.isDirectory) dirs.push(join(root, "cases", e.name));
  }
  return dirs.sort();
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      device: { type: "string", default: "cpu" },
      precision: { type: "string" },
      exclude: { type: "string", default: "" },
    },
  });
  const device = values.device as RunOptions["device"];
  if (device !== "cpu" && device !== "cuda") {
    throw new TypeError(`--device must be cpu or cuda, got "${device}"`);
  }
  const precision = (values.precision ?? (device === "cuda" ? "fp16" : "fp32")) as RunOptions["precision"];
  if (precision !== "fp32" && precision !== "fp16") throw new TypeError(`--precision must be fp32 or fp16`);
  const excluded = new Set(values.exclude.split(",").filter(Boolean));
  const dirs = positionals.length ? positionals.map((p) => resolve(p)) : await listCases();
  const summaries: CaseSummary[] = [];
  for (const dir of dirs) {
    if (excluded.has(dir.split("/").filter(Boolean).pop()!)) continue;
    summaries.push(await runCase(dir, { device, precision }));
  }
  const passed = summaries.filter((s) => s.passed).length;
  console.log(JSON.stringify({
    cases: summaries.length,
    passed,
    failed: summaries.length - passed,
    device,
    precision,
    results: summaries.map((s) => ({
      case: s.case,
      passed: s.passed,
      seconds: s.seconds,
      ...(s.error ? { error: s.error } : {}),
      tensors: s.tensors.map((t) => ({
        name: t.name,
        max_abs: t.maxAbs,
        rel_l2: t.relL2,
        bound: t.bound,
        metric: t.metric,
        pass: t.pass,
      })),
    })),
  }));
  Deno.exit(passed === summaries.length ? 0 : 1);
}
