/**
 * A compact, regenerable copy of the golden set for the GPU machine (whose upload limit, 64 MiB with
 * the Deno binary, cannot hold the 57 MB set).
 *
 * - `pack [--golden dir] [--out .gpu/golden] [--min-bytes 1000000]`: copies README.md, every file
 *   under cases/ and every small model file; each model file of at least `--min-bytes` is replaced by
 *   a recipe: for every tensor the Philox weight rule (seed + state-dict name) that reproduces it
 *   bit for bit after rounding to the file's dtype, or, when none does (`pos_encoder.pe` buffers,
 *   ...), its bytes in `extras.safetensors`. `pack` then unpacks into a temporary folder and checks
 *   that every tensor of every file equals the original bit for bit (exit 1 otherwise).
 * - `unpack [--dir .gpu/golden]`: writes the recipe's model files (safetensors, at the original
 *   paths: the checkpoint readers choose the format by magic bytes, so a `.ckpt`/`.pt` path holding
 *   safetensors bytes loads the same tensors). Needs the native library (Philox is generated natively).
 * - `verify --golden dir --dir dir`: compares every model file tensor by tensor.
 *
 * What differs from the original set: the big `.ckpt`/`.pt` files are safetensors, so the torch zip
 * reader is not exercised there (it is on the CPU, in CI); MANIFEST.json's sha256 no longer match.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, relative, resolve } from "node:path";
import { openCheckpoint, openSafetensors, writeSafetensors } from "../../ffi/formats/mod.ts";
import type { HostTensor } from "../../ffi/host_tensor.ts";
import { TensorMap } from "../../ffi/native.ts";
import { mapLdmKey, type UnetLayoutConfig, type VaeLayoutConfig } from "../../engines/ldm_convert.ts";
import { defaultGoldenRoot } from "../golden/framework.ts";

/** Philox seeds of the golden README ("Seeds" and engine_build), tried in this order. */
const SEEDS = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1101, 1102, 1106, 1201];

/** One tensor of a regenerated file. */
interface RecipeTensor {
  key: string;
  dtype: "F32" | "F16";
  shape: number[];
  /** Philox weight rule: seed and the name hashed into the counter. Absent: the bytes are in extras. */
  seed?: number;
  name?: string;
}

interface Recipe {
  version: 1;
  files: Record<string, { bytes: number; tensors: RecipeTensor[] }>;
}

const RECIPE = "recipe.json";
const EXTRAS = "extras.safetensors";

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The Philox weight tensor of `name`/`seed` as bytes of `dtype` (float32 values rounded like torch's .half()). */
function philoxBytes(map: TensorMap, name: string, shape: number[], seed: number, dtype: "F32" | "F16"): Uint8Array {
  // setPhilox hashes the entry name into the counter: generate under the real name.
  map.setPhilox(name, shape, { kind: "weight", seed });
  const t = map.get(name);
  map.delete(name);
  if (dtype === "F32") return t.data;
  const f32 = new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  return new Uint8Array(new Float16Array(f32).buffer);
}

/** Names a tensor may have been generated under (golden README: "the state-dict key"; LDM files: diffusers/HF names). */
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

async function pack(golden: string, out: string, minBytes: number): Promise<void> {
  await Deno.remove(out, { recursive: true }).catch(() => {});
  await Deno.mkdir(out, { recursive: true });
  const readJson = async (p: string) => JSON.parse(await Deno.readTextFile(join(golden, p)));
  const ldm = {
    unet: await readJson("models/tiny_sd15/unet/config.json"),
    vae: await readJson("models/tiny_sd15/vae/config.json"),
  };
  const recipe: Recipe = { version: 1, files: {} };
  const extras: Record<string, HostTensor> = {};
  let copied = 0, recipeBytes = 0;
  using map = new TensorMap();
  for await (const path of walk(golden)) {
    const rel = relative(golden, path);
    const size = (await Deno.stat(path)).size;
    const isModel = rel.startsWith("models/") && !/\.(json|yaml|txt)$/.test(rel);
    if (!isModel || size < minBytes) {
      await Deno.mkdir(dirname(join(out, rel)), { recursive: true });
      await Deno.copyFile(path, join(out, rel));
      copied += size;
      continue;
    }
    using file = await openCheckpoint(path);
    const tensors: RecipeTensor[] = [];
    let literal = 0;
    for (const key of file.names) {
      const t = await file.read(key);
      if (t.dtype !== "F32" && t.dtype !== "F16") throw new Error(`${rel}: ${key} is ${t.dtype}`);
      let found: { seed: number; name: string } | undefined;
      search: for (const name of nameCandidates(key, rel.includes("dreambooth") ? ldm : undefined)) {
        for (const seed of SEEDS) {
          if (equalBytes(philoxBytes(map, name, t.shape, seed, t.dtype), t.data)) {
            found = { seed, name };
            break search;
          }
        }
      }
      if (found) tensors.push({ key, dtype: t.dtype, shape: t.shape, ...found });
      else {
        tensors.push({ key, dtype: t.dtype, shape: t.shape });
        extras[`${rel}::${key}`] = { ...t, data: t.data.slice() };
        literal += t.data.byteLength;
      }
    }
    recipe.files[rel] = { bytes: size, tensors };
    recipeBytes += size;
    console.error(
      `${rel}: ${tensors.length} tensors, ${tensors.filter((t) => t.seed !== undefined).length} from Philox, ` +
        `${literal} bytes stored`,
    );
  }
  await Deno.writeTextFile(join(out, RECIPE), JSON.stringify(recipe));
  await writeSafetensors(join(out, EXTRAS), extras, { format: "pt" });
  const extrasBytes = (await Deno.stat(join(out, EXTRAS))).size;
  console.error(
    `packed ${golden} -> ${out}: ${copied} bytes copied, ${recipeBytes} bytes of model files as a recipe ` +
      `(+ ${extrasBytes} bytes of literal tensors)`,
  );
}

async function unpack(dir: string): Promise<void> {
  const recipe: Recipe = JSON.parse(await Deno.readTextFile(join(dir, RECIPE)));
  using extras = await openSafetensors(join(dir, EXTRAS));
  using map = new TensorMap();
  for (const [rel, file] of Object.entries(recipe.files)) {
    const tensors: Record<string, HostTensor> = {};
    for (const t of file.tensors) {
      tensors[t.key] = t.seed !== undefined
        ? { dtype: t.dtype, shape: t.shape, data: philoxBytes(map, t.name!, t.shape, t.seed, t.dtype) }
        : await extras.read(`${rel}::${t.key}`);
    }
    await Deno.mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeSafetensors(join(dir, rel), tensors, { format: "pt" });
    console.error(`unpacked ${rel} (${file.tensors.length} tensors)`);
  }
}

/** Compares every recipe file of `dir` with the original of `golden`; returns the number of mismatches. */
async function verify(golden: string, dir: string): Promise<number> {
  const recipe: Recipe = JSON.parse(await Deno.readTextFile(join(dir, RECIPE)));
  let bad = 0;
  for (const rel of Object.keys(recipe.files)) {
    using a = await openCheckpoint(join(golden, rel));
    using b = await openCheckpoint(join(dir, rel));
    const names = [...a.names].sort(), other = [...b.names].sort();
    if (names.join("\n") !== other.join("\n")) {
      console.error(`${rel}: tensor names differ`);
      bad++;
      continue;
    }
    for (const n of names) {
      const x = await a.read(n), y = await b.read(n);
      if (x.dtype !== y.dtype || x.shape.join() !== y.shape.join() || !equalBytes(x.data, y.data)) {
        console.error(`${rel}: ${n} differs`);
        bad++;
      }
    }
    console.error(`${rel}: ${names.length} tensors ${bad ? "checked" : "identical"}`);
  }
  return bad;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      golden: { type: "string" },
      out: { type: "string", default: ".gpu/golden" },
      dir: { type: "string", default: ".gpu/golden" },
      "min-bytes": { type: "string", default: "1000000" },
    },
  });
  const golden = resolve(values.golden ?? defaultGoldenRoot());
  try {
    switch (positionals[0]) {
      case "pack": {
        const out = resolve(values.out);
        await pack(golden, out, Number(values["min-bytes"]));
        const tmp = await Deno.makeTempDir({ prefix: "l2d_golden_unpack_" });
        try {
          for (const f of [RECIPE, EXTRAS]) await Deno.copyFile(join(out, f), join(tmp, f));
          await unpack(tmp);
          const bad = await verify(golden, tmp);
          if (bad) throw new Error(`${bad} tensors differ after unpacking`);
          console.error("verified: every regenerated tensor equals the original bit for bit");
        } finally {
          await Deno.remove(tmp, { recursive: true }).catch(() => {});
        }
        break;
      }
      case "unpack":
        await unpack(resolve(values.dir));
        break;
      case "verify": {
        const bad = await verify(golden, resolve(values.dir));
        if (bad) Deno.exit(1);
        break;
      }
      default:
        throw new TypeError("usage: golden_pack.ts pack|unpack|verify [--golden dir] [--out dir] [--dir dir]");
    }
  } catch (e) {
    console.error(`golden_pack: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
