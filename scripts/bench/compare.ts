/**
 * `deno run -A scripts/bench.ts --compare before.json after.json`: the ratios after / before of two
 * bench summaries (the last stdout line of `deno task bench`, or a file holding it), configuration by
 * configuration (matched on width x height x steps) and per concurrency level: FPS (speed-up), p50/p99,
 * host ms, launches per frame, per-stage ms. Made for one GPU run with a switch flipped
 * (L2D_CUDA_GRAPHS=0/1, L2D_FUSE=none/all, L2D_KERNELS=simple/auto, L2D_ATTENTION=simple/tc): before and
 * after from ONE run.
 *
 * @module
 */

/** One compared quantity. */
export interface Ratio {
  metric: string;
  before: number;
  after: number;
  /** after / before (null when before is 0 or either is missing / not finite). */
  ratio: number | null;
}

/** The comparison of one configuration or concurrency level. */
export interface ComparedRow {
  key: string;
  ratios: Ratio[];
}

type Json = Record<string, unknown>;

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Reads a bench summary: a file whose last non-empty line is the JSON object. */
export async function readSummary(path: string): Promise<Json> {
  const lines = (await Deno.readTextFile(path)).split("\n").map((l) => l.trim()).filter(Boolean);
  const last = lines[lines.length - 1];
  if (!last) throw new Error(`${path}: empty (no bench JSON)`);
  try {
    const v = JSON.parse(last);
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Json;
  } catch {
    // reported below
  }
  throw new Error(`${path}: the last line is not a bench JSON object`);
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function ratio(metric: string, a: unknown, b: unknown): Ratio | null {
  const x = num(a), y = num(b);
  if (x === undefined || y === undefined) return null;
  return { metric, before: x, after: y, ratio: x !== 0 ? r3(y / x) : null };
}

function pick(o: unknown, path: string): unknown {
  let v: unknown = o;
  for (const k of path.split(".")) v = v && typeof v === "object" ? (v as Json)[k] : undefined;
  return v;
}

const CONFIG_METRICS = [
  "fps",
  "p50_ms",
  "p99_ms",
  "native_p50_ms",
  "backend_peak_bytes",
  "push_ms.host_ms",
  "push_ms.device_wait_ms",
  "launches_per_frame.host_issued",
  "launches_per_frame.kernels",
  "launches_per_frame.graphs",
  "launches_per_frame.syncs",
];
const CONCURRENT_METRICS = ["fps", "fps_per_stream", "p50_ms", "p99_ms"];

function compareRows(
  a: Json[],
  b: Json[],
  key: (r: Json) => string,
  metrics: string[],
  stages: boolean,
): ComparedRow[] {
  const rows: ComparedRow[] = [];
  for (const rb of b) {
    const ra = a.find((r) => key(r) === key(rb));
    if (!ra) continue;
    const ratios = metrics.map((m) => ratio(m, pick(ra, m), pick(rb, m))).filter((r): r is Ratio => r !== null);
    if (stages) {
      const sa = (ra.stage_ms_per_frame ?? {}) as Json, sb = (rb.stage_ms_per_frame ?? {}) as Json;
      for (const name of Object.keys(sb)) {
        const r = ratio(`stage_ms_per_frame.${name}`, sa[name], sb[name]);
        if (r) ratios.push(r);
      }
    }
    rows.push({ key: key(rb), ratios });
  }
  return rows;
}

/** The comparison of two summaries (configurations, then concurrency levels). */
export function compareSummaries(before: Json, after: Json): { rows: ComparedRow[]; unmatched: string[] } {
  const cfgKey = (r: Json) => `${r.width}x${r.height} T=${r.steps}`;
  const conKey = (r: Json) => `${r.streams} streams ${r.width}x${r.height} T=${r.steps}`;
  const list = (s: Json, k: string) => (Array.isArray(s[k]) ? s[k] as Json[] : []);
  const rows = [
    ...compareRows(list(before, "configs"), list(after, "configs"), cfgKey, CONFIG_METRICS, true),
    ...compareRows(list(before, "concurrent"), list(after, "concurrent"), conKey, CONCURRENT_METRICS, false),
  ];
  const matched = new Set(rows.map((r) => r.key));
  const unmatched = [
    ...list(before, "configs").map(cfgKey),
    ...list(after, "configs").map(cfgKey),
    ...list(before, "concurrent").map(conKey),
    ...list(after, "concurrent").map(conKey),
  ].filter((k) => !matched.has(k));
  return { rows, unmatched: [...new Set(unmatched)] };
}

/** The human table of a comparison. */
export function formatComparison(rows: ComparedRow[], labels: [string, string]): string {
  const out = [`after / before: ${labels[1]} / ${labels[0]}`];
  for (const row of rows) {
    out.push(row.key);
    for (const r of row.ratios) {
      out.push(
        `  ${r.metric.padEnd(32)} ${String(r.before).padStart(12)} -> ${String(r.after).padStart(12)}  ` +
          `x${r.ratio === null ? "-" : r.ratio.toFixed(3)}`,
      );
    }
  }
  return out.join("\n");
}

/** `--compare a.json b.json`: the table to stderr, one JSON line to stdout. */
export async function compareMain(paths: string[]): Promise<void> {
  if (paths.length !== 2) throw new TypeError("--compare needs two bench JSON files: before.json after.json");
  const [a, b] = await Promise.all(paths.map(readSummary));
  const { rows, unmatched } = compareSummaries(a!, b!);
  console.error(formatComparison(rows, [paths[0]!, paths[1]!]));
  if (unmatched.length) console.error(`in only one of them: ${unmatched.join(", ")}`);
  console.log(JSON.stringify({
    compare: "live2diff-bench",
    before: paths[0],
    after: paths[1],
    device_name: b!.device_name ?? a!.device_name,
    rows,
    ...(unmatched.length ? { unmatched } : {}),
  }));
}
