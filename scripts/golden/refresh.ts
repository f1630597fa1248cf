/**
 * `deno task golden:refresh [--from ../shared/golden] [--check]`: refreshes the repository's compact
 * copy of the public golden set (`golden/`) from its source, then proves the copy complete: every
 * file of the source is unpacked from the new copy and compared byte for byte (same file list, same
 * bytes). `--check` only runs that comparison against the copy already in the repository.
 *
 * Model files of at least 100 kB that are checkpoints are packed (scripts/golden/packed_set.ts):
 * each tensor that the golden README's Philox weight rule reproduces bit for bit is stored as its
 * seed + name, everything else as literal bytes. All other files are copied.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { openCheckpoint } from "../../ffi/formats/mod.ts";
import { mapLdmKey, type UnetLayoutConfig, type VaeLayoutConfig } from "../../engines/ldm_convert.ts";
import {
  describeFile,
  FILES,
  type KnownTensor,
  LITERALS,
  PACK_JSON,
  type PackManifest,
  philoxSegmentBytes,
  sha256,
  unpackSet,
} from "./packed_set.ts";
import { REPO_GOLDEN } from "./root.ts";

/** Its source: the shared golden set beside the repository. */
const DEFAULT_SOURCE = fileURLToPath(new URL("../../../shared/golden", import.meta.url));

/** Philox seeds of the golden README ("Seeds" and engine_build), tried in this order. */
const SEEDS = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1101, 1102, 1106, 1201];
/** Model files below this size are copied as they are. */
const MIN_PACKED_BYTES = 100_000;

async function* walk(dir: string): AsyncGenerator<string> {
  const entries = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
    else throw new Error(`${p}: only plain files and folders can be packed`);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Names a tensor may have been generated under (README: "the state-dict key"; LDM files: diffusers/HF names). */
function nameCandidates(key: string, ldm?: { unet: UnetLayoutConfig; vae: VaeLayoutConfig }): string[] {
  const out = [key, key.replaceAll("module.", "")];
  for (const p of ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."]) {
    if (key.startsWith(p)) out.push(key.slice(p.length));
  }
  if (ldm) {
    const m = mapLdmKey(key, ldm.unet, ldm.vae);
    if (m) out.push(m.name);
  }
  return [...new Set(out)];
}

/**
 * The Philox rule (seed, name) that gives `data` bit for bit, or undefined. A first row (the rule
 * depends on the name, the rank and the fan-in only) rejects wrong candidates cheaply.
 */
function findRule(
  key: string,
  dtype: "F32" | "F16",
  shape: number[],
  data: Uint8Array,
  ldm: { unet: UnetLayoutConfig; vae: VaeLayoutConfig } | undefined,
): { seed: number; name: string } | undefined {
  const head = shape.length >= 2 ? [1, ...shape.slice(1)] : shape.length === 1 ? [Math.min(4, shape[0]!)] : [];
  for (const name of nameCandidates(key, ldm)) {
    for (const seed of SEEDS) {
      const prefix = philoxSegmentBytes({ seed, name, dtype, shape: head });
      if (!equalBytes(prefix, data.subarray(0, prefix.byteLength))) continue;
      if (equalBytes(philoxSegmentBytes({ seed, name, dtype, shape }), data)) return { seed, name };
    }
  }
  return undefined;
}

/** The tensors of a checkpoint file that a Philox rule reproduces. */
async function knownTensors(
  path: string,
  ldm: { unet: UnetLayoutConfig; vae: VaeLayoutConfig } | undefined,
): Promise<{ known: KnownTensor[]; total: number }> {
  using file = await openCheckpoint(path);
  const known: KnownTensor[] = [];
  for (const key of file.names) {
    const t = await file.read(key);
    if (t.dtype !== "F32" && t.dtype !== "F16") continue;
    const rule = findRule(key, t.dtype, t.shape, t.data, ldm);
    if (rule) known.push({ data: t.data, seg: { ...rule, dtype: t.dtype, shape: t.shape } });
  }
  return { known, total: file.names.length };
}

async function isCheckpoint(path: string): Promise<boolean> {
  try {
    using _ = await openCheckpoint(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes the compact copy of `source` into `out` (an empty folder). */
async function pack(source: string, out: string): Promise<void> {
  const readJson = async (p: string) => JSON.parse(await Deno.readTextFile(join(source, p)));
  const ldm = {
    unet: await readJson("models/tiny_sd15/unet/config.json"),
    vae: await readJson("models/tiny_sd15/vae/config.json"),
  };
  const manifest: PackManifest = { version: 1, files: {} };
  const literals = { parts: [] as Uint8Array[], size: 0 };
  for await (const path of walk(source)) {
    const rel = relative(source, path);
    const bytes = await Deno.readFile(path);
    const entry = { bytes: bytes.byteLength, sha256: sha256(bytes) };
    if (rel.startsWith("models/") && bytes.byteLength >= MIN_PACKED_BYTES && await isCheckpoint(path)) {
      const { known, total } = await knownTensors(path, rel.includes("dreambooth") ? ldm : undefined);
      const literalBefore = literals.size;
      const { segments, philoxBytes } = describeFile(bytes, known, literals);
      manifest.files[rel] = { ...entry, segments };
      console.error(
        `packed ${rel}: ${known.length}/${total} tensors from Philox (${philoxBytes} bytes), ` +
          `${literals.size - literalBefore} literal bytes`,
      );
    } else {
      manifest.files[rel] = entry;
      await Deno.mkdir(dirname(join(out, FILES, rel)), { recursive: true });
      await Deno.writeFile(join(out, FILES, rel), bytes);
    }
  }
  const blob = new Uint8Array(literals.size);
  let at = 0;
  for (const p of literals.parts) {
    blob.set(p, at);
    at += p.byteLength;
  }
  await Deno.writeFile(join(out, LITERALS), blob);
  // One line per file: small diffs when the set changes.
  const lines = Object.entries(manifest.files).map(([rel, f]) => `    ${JSON.stringify(rel)}: ${JSON.stringify(f)}`);
  await Deno.writeTextFile(join(out, PACK_JSON), `{\n  "version": 1,\n  "files": {\n${lines.join(",\n")}\n  }\n}\n`);
}

/**
 * Unpacks `packDir` into a temporary folder and compares it with `source`: same file list, same
 * bytes. Returns the problems found (empty: the copy is complete).
 */
export async function checkComplete(packDir: string, source: string): Promise<string[]> {
  const manifest: PackManifest = JSON.parse(await Deno.readTextFile(join(packDir, PACK_JSON)));
  const tmp = await Deno.makeTempDir({ prefix: "l2d_golden_check_" });
  const problems: string[] = [];
  try {
    await unpackSet(packDir, manifest, tmp);
    const seen = new Set<string>();
    for await (const path of walk(source)) {
      const rel = relative(source, path);
      seen.add(rel);
      const copy = await Deno.readFile(join(tmp, rel)).catch(() => null);
      if (!copy) problems.push(`${rel}: missing from the copy`);
      else if (!equalBytes(copy, await Deno.readFile(path))) problems.push(`${rel}: differs from the source`);
    }
    for (const rel of Object.keys(manifest.files)) if (!seen.has(rel)) problems.push(`${rel}: not in the source`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  return problems;
}

async function folderBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const p of walk(dir)) n += (await Deno.stat(p)).size;
  return n;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { from: { type: "string", default: DEFAULT_SOURCE }, check: { type: "boolean", default: false } },
  });
  const source = resolve(values.from);
  let target = REPO_GOLDEN;
  let staged: string | undefined;
  if (!values.check) {
    staged = `${REPO_GOLDEN}.refresh-${Deno.pid}`;
    await Deno.mkdir(staged, { recursive: true });
    await pack(source, staged);
    target = staged;
  }
  const problems = await checkComplete(target, source);
  if (problems.length) {
    for (const p of problems) console.error(`golden:refresh: ${p}`);
    if (staged) await Deno.remove(staged, { recursive: true });
    console.error(
      `golden:refresh: the copy is INCOMPLETE (${problems.length} problems); ${REPO_GOLDEN} left as it was`,
    );
    Deno.exit(1);
  }
  if (staged) {
    // Our README.md stays: it describes the folder, not the set.
    const readme = await Deno.readFile(join(REPO_GOLDEN, "README.md")).catch(() => null);
    if (readme) await Deno.writeFile(join(staged, "README.md"), readme);
    await Deno.remove(REPO_GOLDEN, { recursive: true }).catch(() => {});
    await Deno.rename(staged, REPO_GOLDEN);
  }
  console.error(
    `golden:refresh: ${REPO_GOLDEN} (${await folderBytes(REPO_GOLDEN)} bytes) reproduces every file of ${source} ` +
      `(${await folderBytes(source)} bytes) bit for bit`,
  );
}
