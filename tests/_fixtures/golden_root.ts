/**
 * Locates the golden root (the folder holding `cases/` and `models/`): env `L2D_GOLDEN_DIR`
 * when set, else the repository's public set (`golden/`), unpacked into the cache on first use
 * (scripts/golden/root.ts). Resolved once, when a test file first imports this module.
 *
 * @module
 */
import { resolve } from "node:path";
import { goldenRoot as resolveGoldenRoot } from "../../scripts/golden/root.ts";

const ROOT = await resolveGoldenRoot();

/** Absolute path of the golden root. */
export function goldenRoot(): string {
  return ROOT;
}

/** Absolute path of `rel` inside the golden root. */
export function goldenPath(rel: string): string {
  return resolve(goldenRoot(), rel);
}

/** Philox seeds of the shipped model files. */
export interface GoldenSeeds {
  unet: number;
  clip: number;
  taesd: number;
  midasReduced: number;
  vae: number;
  lora: number;
  dreamboothUnet: number;
  dreamboothVae: number;
  dreamboothClip: number;
}

/** Seeds of the public set (golden README, "Seeds (public set)" and "engine_build"). */
export const PUBLIC_SEEDS: Readonly<GoldenSeeds> = {
  unet: 1001,
  clip: 1002,
  taesd: 1003,
  midasReduced: 1004,
  vae: 1006,
  lora: 1201,
  dreamboothUnet: 1101,
  dreamboothVae: 1106,
  dreamboothClip: 1102,
};

/**
 * Reads the model seeds from the golden root's README, so the same tests run on other golden sets
 * (which use other seeds); any seed the README does not state keeps its public value.
 */
export async function goldenSeeds(): Promise<GoldenSeeds> {
  let text = "";
  try {
    text = await Deno.readTextFile(goldenPath("README.md"));
  } catch {
    return { ...PUBLIC_SEEDS };
  }
  const seeds = { ...PUBLIC_SEEDS };
  const row = (label: RegExp) => {
    const m = new RegExp(String.raw`^\|\s*${label.source}[^|]*\|\s*(\d+)\s*\|`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  };
  seeds.unet = row(/tiny UNet/) ?? seeds.unet;
  seeds.clip = row(/tiny CLIP text encoder/) ?? seeds.clip;
  seeds.taesd = row(/TAESD/) ?? seeds.taesd;
  seeds.midasReduced = row(/reduced MiDaS/) ?? seeds.midasReduced;
  seeds.vae = row(/tiny AutoencoderKL/) ?? seeds.vae;
  const lora = /Philox seed (\d+) by key name/.exec(text);
  if (lora) seeds.lora = Number(lora[1]);
  const db = /2-D UNet (\d+), VAE (\d+), CLIP (\d+)/.exec(text);
  if (db) [seeds.dreamboothUnet, seeds.dreamboothVae, seeds.dreamboothClip] = db.slice(1).map(Number);
  return seeds;
}
