/**
 * Summary of a scripts/gpu-check.sh run: reads the step table and logs of its work folder and writes
 * `summary.json` + `summary.txt` into the output folder (and prints the text).
 *
 * `deno run -A scripts/gpu/summary.ts --work /tmp/l2d-gpu-check.X --out $OUT [--dry 0|1] [--budget s] [--elapsed s]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";

interface Step {
  name: string;
  rc: string;
  seconds: number;
}

interface TensorVerdict {
  name: string;
  metric: string;
  value: number;
  bound: number;
  pass: boolean;
}

interface GoldenCell {
  status: "PASS" | "FAIL" | "ERROR" | "TIMEOUT" | "SKIPPED";
  seconds: number;
  detail?: string;
  tensors?: TensorVerdict[];
}

async function text(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

function lastLine(s: string): string {
  const lines = s.trimEnd().split("\n");
  return lines[lines.length - 1] ?? "";
}

function tryJson(s: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(s);
    return typeof v === "object" && v !== null ? v : null;
  } catch {
    return null;
  }
}

const fmt = (x: number) => Number.isFinite(x) ? x.toExponential(2) : String(x);

async function golden(work: string, step: Step): Promise<GoldenCell> {
  const out = await text(join(work, "logs", `${step.name}.out`));
  const err = await text(join(work, "logs", `${step.name}.err`));
  if (step.rc === "skip") return { status: "SKIPPED", seconds: 0, detail: "no time left" };
  const json = tryJson(lastLine(out));
  // deno-lint-ignore no-explicit-any
  const result = (json?.results as any[] | undefined)?.[0];
  if (step.rc === "124" || step.rc === "137") {
    return { status: "TIMEOUT", seconds: step.seconds, detail: lastLine(err) || lastLine(out) };
  }
  if (!result) {
    return { status: "ERROR", seconds: step.seconds, detail: (lastLine(err) || lastLine(out)).slice(0, 300) };
  }
  // deno-lint-ignore no-explicit-any
  const tensors: TensorVerdict[] = (result.tensors ?? []).map((t: any) => ({
    name: t.name,
    metric: t.metric,
    value: t.metric === "rel_l2" ? t.rel_l2 : t.max_abs,
    bound: t.bound,
    pass: t.pass,
  }));
  const failed = tensors.filter((t) => !t.pass);
  let detail: string | undefined;
  if (result.error) detail = String(result.error).slice(0, 300);
  else if (failed.length) {
    detail = `${failed.length}/${tensors.length} tensors fail: ` +
      failed.slice(0, 4).map((t) => `${t.name} ${t.metric} ${fmt(t.value)} > ${fmt(t.bound)}`).join("; ") +
      (failed.length > 4 ? "; ..." : "");
  }
  return { status: result.passed ? "PASS" : "FAIL", seconds: step.seconds, detail, tensors };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      work: { type: "string" },
      out: { type: "string" },
      dry: { type: "string", default: "0" },
      budget: { type: "string", default: "" },
      elapsed: { type: "string", default: "" },
    },
  });
  const work = values.work!, outDir = values.out!;
  const steps: Step[] = (await text(join(work, "steps.tsv"))).split("\n").filter(Boolean).map((l) => {
    const [name = "", rc = "", seconds = "0"] = l.split("\t");
    return { name, rc, seconds: Number(seconds) };
  });
  const env = await text(join(work, "logs", "env.log"));
  const gpu = env.split("\n").find((l) => /^NVIDIA|H100|H200/.test(l))?.trim() ?? "no GPU (nvidia-smi found none)";

  const ops = await text(join(work, "logs", "test_cuda_ops.out"));
  const opFails = ops.split("\n").filter((l) => /FAIL/.test(l) && !/^test_cuda_ops:/.test(l)).map((l) => l.trim());
  const opsStep = steps.find((s) => s.name === "test_cuda_ops");
  const opsResult = {
    rc: opsStep?.rc ?? "not run",
    verdict: lastLine(ops) || "(no output)",
    failures: opFails.length,
    failed: opFails.slice(0, 40),
  };

  // The other native checks: device guard, vendor conformance, other op tests, their L2D_CUDA_SYNC
  // reruns, compute-sanitizer (whose last line is its "ERROR SUMMARY").
  const extra: Record<string, { rc: string; verdict: string; failed: string[] }> = {};
  for (const s of steps) {
    if (!/^(test_cuda_|test_device_guard|vendor_conformance|sanitize_)/.test(s.name) || s.name === "test_cuda_ops") {
      continue;
    }
    const out = await text(join(work, "logs", `${s.name}.out`));
    extra[s.name] = {
      rc: s.rc,
      verdict: lastLine(out) || lastLine(await text(join(work, "logs", `${s.name}.err`))) || "(no output)",
      failed: out.split("\n").filter((l) => /FAIL|^========= (Invalid|Race|Barrier|Error)/.test(l)).map((l) => l.trim())
        .slice(0, 20),
    };
  }

  const goldenResults: Record<string, Record<string, GoldenCell>> = {};
  for (const s of steps) {
    const m = /^golden-(fp32|fp16)-(.+)$/.exec(s.name);
    if (!m) continue;
    (goldenResults[m[2]!] ??= {})[m[1]!] = await golden(work, s);
  }
  const bench = tryJson(lastLine(await text(join(work, "logs", "bench.out"))));

  const summary = {
    gpu,
    dry_run: values.dry === "1",
    budget_s: Number(values.budget) || null,
    elapsed_s: Number(values.elapsed) || null,
    steps,
    test_cuda_ops: opsResult,
    native_checks: extra,
    golden: goldenResults,
    bench,
  };
  await Deno.writeTextFile(join(outDir, "summary.json"), JSON.stringify(summary, null, 1));

  const lines: string[] = [];
  lines.push(
    `== live2diff GPU check${summary.dry_run ? " (DRY RUN, no GPU)" : ""}: ${gpu}; ${summary.elapsed_s ?? "?"} s of ${
      summary.budget_s ?? "?"
    } s ==`,
  );
  lines.push(
    "steps: " +
      steps.filter((s) => !s.name.startsWith("golden-")).map((s) =>
        `${s.name} ${
          s.rc === "0"
            ? "ok"
            : s.rc === "skip"
            ? "SKIPPED"
            : s.rc === "124"
            ? "TIMEOUT"
            : s.rc === "77"
            ? "NO-GPU(FAILED)"
            : `rc=${s.rc}`
        } ${s.seconds}s`
      ).join(" | "),
  );
  lines.push(`test_cuda_ops: ${opsResult.verdict} (rc ${opsResult.rc})`);
  for (const f of opFails.slice(0, 15)) lines.push(`  ${f}`);
  if (opFails.length > 15) lines.push(`  ... ${opFails.length - 15} more in logs.tar.gz (test_cuda_ops.out)`);
  for (const [name, r] of Object.entries(extra)) {
    lines.push(`${name}: ${r.verdict} (rc ${r.rc})`);
    for (const f of r.failed.slice(0, 8)) lines.push(`  ${f}`);
  }
  const precisions = ["fp32", "fp16"].filter((p) => Object.values(goldenResults).some((r) => r[p]));
  lines.push(`golden (${precisions.join(", ")}):`);
  for (const [name, r] of Object.entries(goldenResults)) {
    const cells = precisions.map((p) => r[p] ? `${p} ${r[p]!.status} ${r[p]!.seconds}s` : `${p} -`);
    lines.push(`  ${name.padEnd(17)} ${cells.map((c) => c.padEnd(20)).join(" ")}`);
    for (const p of precisions) if (r[p]?.detail && r[p]!.status !== "PASS") lines.push(`      ${p}: ${r[p]!.detail}`);
  }
  const passed = Object.values(goldenResults).flatMap((r) => Object.values(r)).filter((c) => c.status === "PASS");
  const total = Object.values(goldenResults).flatMap((r) => Object.values(r)).length;
  lines.push(`golden: ${passed.length}/${total} case runs pass`);
  if (bench) {
    // deno-lint-ignore no-explicit-any
    const configs = (bench.configs as any[] | undefined) ?? [];
    lines.push(`bench (${bench.device_name}, ${bench.precision}):`);
    for (const c of configs) {
      lines.push(
        `  ${c.width}x${c.height} T=${c.steps}: ${c.fps} fps, p50 ${c.p50_ms} ms, p99 ${c.p99_ms} ms, native p50 ${c.native_p50_ms} ms, ` +
          `stages ${JSON.stringify(c.stages_ms ?? {})}`,
      );
      if (c.launches_per_frame || c.push_ms || c.stage_ms_per_frame) {
        lines.push(
          `    per frame: launches ${JSON.stringify(c.launches_per_frame ?? null)}, host ${
            c.push_ms?.host_ms ?? "?"
          } ms ` +
            `(device wait ${c.push_ms?.device_wait_ms ?? "?"} ms), stages in the push ${
              JSON.stringify(c.stage_ms_per_frame ?? null)
            }, peak ${Math.round((c.backend_peak_bytes ?? 0) / 2 ** 20)} MiB`,
        );
      }
    }
    // deno-lint-ignore no-explicit-any
    for (const k of (bench.concurrent as any[] | undefined) ?? []) {
      lines.push(
        `  ${k.streams} streams at once ${k.width}x${k.height} T=${k.steps}: ${k.fps} fps in total ` +
          `(${k.fps_per_stream} per stream), p50 ${k.p50_ms} ms, p99 ${k.p99_ms} ms`,
      );
    }
    lines.push(`bench JSON: ${JSON.stringify(bench)}`);
  } else {
    lines.push("bench: no result (see logs.tar.gz: logs/bench.err)");
  }
  // Step 7: the switch pairs (scripts/bench/switch_pairs.ts), after / before per configuration.
  const pairs = tryJson(lastLine(await text(join(outDir, "bench_switches.json"))));
  // deno-lint-ignore no-explicit-any
  for (const p of (pairs?.bench_switch_pairs as any[] | undefined) ?? []) {
    if (p.error) {
      lines.push(`bench ${p.switch}=${p.before} -> ${p.after}: ${p.error}`);
      continue;
    }
    for (const row of p.rows ?? []) {
      // deno-lint-ignore no-explicit-any
      const show = (row.ratios as any[]).filter((r) =>
        ["fps", "p99_ms", "push_ms.host_ms", "launches_per_frame.host_issued", "stage_ms_per_frame.unet"].includes(
          r.metric,
        )
      ).map((r) => `${r.metric} ${r.before} -> ${r.after} (x${r.ratio ?? "-"})`);
      lines.push(`bench ${p.switch}=${p.before} -> ${p.after}, ${row.key}: ${show.join(", ")}`);
    }
  }
  const txt = lines.join("\n");
  await Deno.writeTextFile(join(outDir, "summary.txt"), txt + "\n");
  console.log(txt);
}
