/**
 * Model downloads: what a user needs to build an engine, fetched with resume (HTTP Range), sha256
 * verification and a progress bar, into a models folder laid out as in engines/README.md.
 *
 * Integrity: entries with a known sha256 are verified against it. For the others (marked `sha256: null`
 * below: no hash we could confirm without network access) the hash is computed and recorded in
 * `<models>/SHA256SUMS` on first download ("trust on first use"); later runs verify against that record,
 * so a changed or corrupted file is still caught.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { Progress } from "./progress.ts";

/** One file to fetch. */
export interface ModelFile {
  /** Path under the models folder. */
  dest: string;
  /** Download URL (its origin is replaced by `baseUrl` when given). */
  url: string;
  /** Expected sha256 (hex), or null when not known in advance (see module doc). */
  sha256: string | null;
  /** Group it belongs to (`--only sd15,lcm-lora`). */
  group: string;
}

const HF = "https://huggingface.co";
const hf = (repo: string, file: string) => `${HF}/${repo}/resolve/main/${file}`;
const SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5";

/**
 * The default set: SD1.5 diffusers components (the folder Live2Diff's `pretrained_model_path` names), the
 * Live2Diff checkpoint, MiDaS DPT-Hybrid, TAESD and the LCM-LoRA for SD1.5. No hash below could be
 * confirmed offline, so all are `null` (recorded on first download).
 */
export const DEFAULT_MODELS: ModelFile[] = [
  ...[
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "scheduler/scheduler_config.json",
    "vae/config.json",
  ].map((f) => ({ dest: `stable-diffusion-v1-5/${f}`, url: hf(SD15, f), sha256: null, group: "sd15" })),
  { dest: "live2diff.ckpt", url: hf("Leoxing/Live2Diff", "live2diff.ckpt"), sha256: null, group: "live2diff" },
  {
    dest: "dpt_hybrid_384.pt",
    url: "https://github.com/isl-org/MiDaS/releases/download/v3/dpt_hybrid_384.pt",
    sha256: null,
    group: "midas",
  },
  { dest: "taesd/config.json", url: hf("madebyollin/taesd", "config.json"), sha256: null, group: "taesd" },
  {
    dest: "taesd/diffusion_pytorch_model.safetensors",
    url: hf("madebyollin/taesd", "diffusion_pytorch_model.safetensors"),
    sha256: null,
    group: "taesd",
  },
  {
    dest: "lcm-lora-sdv1-5/pytorch_lora_weights.safetensors",
    url: hf("latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors"),
    sha256: null,
    group: "lcm-lora",
  },
];

/** A download failed (HTTP error, hash mismatch, too many retries). */
export class DownloadError extends Error {
  override name = "DownloadError";
}

/** Options of {@linkcode downloadFile} / {@linkcode downloadModels}. */
export interface DownloadOptions {
  /** Replace every URL's origin with this (tests, mirrors). */
  baseUrl?: string;
  /** Attempts per file (each resumes where the last stopped). @default 5 */
  retries?: number;
  /** Bearer token for gated repositories. */
  token?: string;
  quiet?: boolean;
  /** Injected for tests. */
  fetch?: typeof fetch;
}

/** Rewrites a URL onto `baseUrl` (keeping path and query). */
export function rebase(url: string, baseUrl?: string): string {
  if (!baseUrl) return url;
  const u = new URL(url);
  return baseUrl.replace(/\/$/, "") + u.pathname + u.search;
}

async function hashExisting(path: string): Promise<{ hash: ReturnType<typeof createHash>; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  try {
    using f = await Deno.open(path, { read: true });
    const buf = new Uint8Array(8 << 20);
    while (true) {
      const n = await f.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      size += n;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return { hash, size };
}

/**
 * Downloads `url` to `dest` via `dest.part`, resuming a partial file with `Range`, retrying after a broken
 * connection, and checking `sha256` (if given) before renaming into place. Returns the file's sha256.
 */
export async function downloadFile(
  url: string,
  dest: string,
  sha256: string | null,
  o: DownloadOptions = {},
): Promise<string> {
  const doFetch = o.fetch ?? fetch;
  const part = `${dest}.part`;
  await Deno.mkdir(dirname(dest), { recursive: true });
  // The hash of the bytes already on disk is rebuilt once, then extended as new bytes arrive.
  let { hash, size } = await hashExisting(part);
  const attempts = o.retries ?? 5;
  let lastError: unknown;
  let bar: Progress | undefined;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const headers: Record<string, string> = {};
    if (size > 0) headers.Range = `bytes=${size}-`;
    if (o.token) headers.Authorization = `Bearer ${o.token}`;
    let res: Response;
    try {
      res = await doFetch(url, { headers });
    } catch (e) {
      lastError = e;
      continue;
    }
    if (res.status === 416 && size > 0) {
      // Range past the end: the partial file is already complete.
      await res.body?.cancel();
      break;
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw new DownloadError(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
    }
    if (res.status === 200 && size > 0) {
      // The server ignored Range: start over.
      ({ hash, size } = { hash: createHash("sha256"), size: 0 });
    }
    const length = Number(res.headers.get("content-length") ?? NaN);
    const total = size + (Number.isFinite(length) ? length : 0);
    bar ??= new Progress(dest.split("/").slice(-1)[0]!.slice(0, 22), total, { bytes: true, quiet: o.quiet });
    bar.total = Math.max(bar.total, total);
    using file = await Deno.open(part, {
      write: true,
      create: true,
      append: res.status === 206,
      truncate: res.status === 200,
    });
    try {
      for await (const chunk of res.body!) {
        hash.update(chunk);
        for (let done = 0; done < chunk.byteLength;) done += await file.write(chunk.subarray(done));
        size += chunk.byteLength;
        bar.set(size);
      }
      if (Number.isFinite(length) && size < total) throw new DownloadError(`connection closed early`);
      lastError = undefined;
      break;
    } catch (e) {
      lastError = e;
    }
  }
  if (lastError !== undefined) {
    throw new DownloadError(
      `GET ${url}: failed after ${attempts} attempts (${(lastError as Error)?.message ?? lastError}); ` +
        `run again to resume from ${size} bytes`,
      { cause: lastError },
    );
  }
  bar?.finish();
  const got = hash.digest("hex");
  if (sha256 && got !== sha256.toLowerCase()) {
    await Deno.remove(part).catch(() => {});
    throw new DownloadError(
      `${dest}: sha256 ${got} does not match the expected ${sha256}; the partial file was removed`,
    );
  }
  await Deno.rename(part, dest);
  return got;
}

/** Reads `<dir>/SHA256SUMS` (`<hex>  <path>` lines). */
export async function readSums(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  try {
    for (const line of (await Deno.readTextFile(join(dir, "SHA256SUMS"))).split("\n")) {
      const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line.trim());
      if (m) out.set(m[2]!, m[1]!);
    }
  } catch { /* first run */ }
  return out;
}

async function writeSums(dir: string, sums: Map<string, string>): Promise<void> {
  const lines = [...sums].sort(([a], [b]) => a.localeCompare(b)).map(([p, h]) => `${h}  ${p}`);
  await Deno.writeTextFile(join(dir, "SHA256SUMS"), lines.join("\n") + "\n");
}

/**
 * Fetches every file of `files` missing from `dir`, verifying known or recorded hashes; files already
 * present are verified too (cheap compared to a download, and catches corruption). Returns the paths fetched.
 */
export async function downloadModels(dir: string, files: ModelFile[], o: DownloadOptions = {}): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const sums = await readSums(dir);
  const fetched: string[] = [];
  for (const f of files) {
    const dest = join(dir, f.dest);
    const expected = f.sha256 ?? sums.get(f.dest) ?? null;
    let present = false;
    try {
      present = (await Deno.stat(dest)).isFile;
    } catch { /* missing */ }
    if (present) {
      if (expected) {
        const { hash } = await hashExisting(dest);
        const got = hash.digest("hex");
        if (got !== expected) {
          throw new DownloadError(`${dest}: sha256 ${got} does not match ${expected}; delete it to re-download`);
        }
      }
      continue;
    }
    const got = await downloadFile(rebase(f.url, o.baseUrl), dest, expected, o);
    sums.set(f.dest, got);
    await writeSums(dir, sums);
    fetched.push(f.dest);
  }
  return fetched;
}
