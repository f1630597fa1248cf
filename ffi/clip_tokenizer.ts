/**
 * CLIP byte-level BPE tokenizer, identical to HuggingFace `transformers`' slow
 * `CLIPTokenizer` on the code path it takes when `ftfy` is NOT installed (the
 * path the golden vectors were made and cross-checked with).
 *
 * Pipeline (as in `PreTrainedTokenizer.tokenize` + `CLIPTokenizer._tokenize`):
 *
 * 1. Added/special tokens typed in the text (`<|startoftext|>`, `<|endoftext|>`, i.e. the configured
 *    bos/eos/unk/pad strings, case-sensitive) are split out first and become their special ids.
 * 2. Every other segment goes through HF's `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`:
 *    drop NUL, U+FFFD and every category-`C*` code point except `\t\n\r`; map `\t\n\r` and `Zs` to a space;
 *    put spaces around CJK ideographs; NFC; split on (Python) whitespace; lower-case each word
 *    (accents are kept; punctuation is NOT split off). Words are re-joined with one space.
 * 3. The CLIP regex `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
 *    (case-insensitive) cuts the text into pieces; each piece's UTF-8 bytes are mapped through GPT-2's
 *    `bytes_to_unicode` table and merged with the ranked BPE merges (the last symbol carries `</w>`).
 * 4. Ids come from `vocab.json` (unknown symbols -> the unk id); `encode` adds BOS/EOS, truncates to
 *    `maxLength` (BOS/EOS included, so EOS always survives) and right-pads with the pad id.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClipTokenizer } from "./clip_tokenizer.ts";
 *
 * const vocab = JSON.stringify({
 *   "h": 0, "i": 1, "h</w>": 2, "i</w>": 3, "hi</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6,
 * });
 * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\nh i</w>\n");
 * assert.ok(tok.bpeTokens("  HI\tih ").join(",") === "hi</w>,i,h</w>");
 * assert.ok(Array.from(tok.encode("Hi", { maxLength: 5 })).join(",") === "5,4,6,6,6");
 * ```
 *
 * @module
 */

/**
 * Special-token strings of a {@linkcode ClipTokenizer}; any that is left out takes HF's CLIP default.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClipTokenizer, type ClipTokenizerConfig } from "./clip_tokenizer.ts";
 *
 * const vocab = JSON.stringify({ "a": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3, "<pad>": 4 });
 * const config: ClipTokenizerConfig = { padToken: "<pad>" };
 * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n", config);
 * assert.equal(tok.padId, 4);
 * ```
 */
export interface ClipTokenizerConfig {
  /** Beginning-of-sequence token (default `<|startoftext|>`). */
  bosToken?: string;
  /** End-of-sequence token (default `<|endoftext|>`). */
  eosToken?: string;
  /** Padding token (default `<|endoftext|>`, as in Stable Diffusion's tokenizer). */
  padToken?: string;
  /** Unknown token (default `<|endoftext|>`). */
  unkToken?: string;
  /** Name of the vocabulary used in error messages (default `vocab.json`). */
  vocabName?: string;
  /** Name of the merges file used in error messages (default `merges.txt`). */
  mergesName?: string;
}

/**
 * Options of {@linkcode ClipTokenizer.encode}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ClipEncodeOptions, ClipTokenizer } from "./clip_tokenizer.ts";
 *
 * const vocab = JSON.stringify({ "a": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3 });
 * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n");
 * const options: ClipEncodeOptions = { maxLength: 8, pad: false };
 * assert.deepEqual(Array.from(tok.encode("a a", options)), [2, 1, 1, 3]);
 * ```
 */
export interface ClipEncodeOptions {
  /**
   * Maximum sequence length INCLUDING BOS and EOS (default 77). Longer prompts are truncated on the right,
   * keeping EOS last. `Infinity` disables truncation (only allowed with `pad: false`). Must be >= 3
   * (at `max_length=2` HF refuses to truncate, logs an error and returns the whole sequence).
   */
  maxLength?: number;
  /** Right-pad with the pad id up to `maxLength` (default `true`). */
  pad?: boolean;
}

const DEFAULT_BOS = "<|startoftext|>";
const DEFAULT_EOS = "<|endoftext|>";
/** HF reads at most this many merges after the `#version` line (`[1 : 49152 - 256 - 2 + 1]`). */
const MAX_MERGES = 49152 - 256 - 2;
const CACHE_LIMIT = 50_000;

/** The CLIP pre-tokenisation regex (HF compiles it with `re.IGNORECASE` using the `regex` module). */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
/** Characters Python's `str.split()` / `str.strip()` treat as whitespace. */
const PY_WS_CLASS = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_WHITESPACE_ALL = new RegExp(`${PY_WS_CLASS}+`, "gu");
const PY_STRIP = new RegExp(`^${PY_WS_CLASS}+|${PY_WS_CLASS}+$`, "gu");
const CATEGORY_C = /^\p{C}$/u;
const CATEGORY_ZS = /^\p{Zs}$/u;

/** GPT-2's `bytes_to_unicode`: byte value -> a printable, non-whitespace character. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  }
  return table;
}
const BYTE_ENCODER = bytesToUnicode();
const UTF8 = new TextEncoder();

/** HF `_is_control`: `\t\n\r` are not control; every other `C*` category is. */
function isControl(ch: string): boolean {
  if (ch === "\t" || ch === "\n" || ch === "\r") return false;
  return CATEGORY_C.test(ch);
}

/** HF `_is_whitespace`: space, `\t\n\r` and category `Zs`. */
function isWhitespace(ch: string): boolean {
  if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") return true;
  return CATEGORY_ZS.test(ch);
}

/** HF `BasicTokenizer._is_chinese_char`. */
function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Python `text.split()` (no argument). */
function pySplit(text: string): string[] {
  return text.split(PY_WHITESPACE_ALL).filter((s) => s.length > 0);
}

/**
 * HF `BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text)`, joined with spaces
 * (what `CLIPTokenizer._tokenize` feeds to the regex when `ftfy` is missing).
 */
function basicClean(text: string): string {
  let cleaned = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
    if (isWhitespace(ch)) cleaned += " ";
    else if (isChineseChar(cp)) cleaned += ` ${ch} `;
    else cleaned += ch;
  }
  const words = pySplit(cleaned.normalize("NFC")).map((w) => w.toLowerCase());
  // `_run_split_on_punc` is a no-op (do_split_on_punc=False); the second whitespace_tokenize only re-splits.
  return pySplit(words.join(" ")).join(" ");
}

function tokenValue(v: unknown, key: string, file: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  throw new Error(`clip tokenizer: ${file}: "${key}" must be a string or an AddedToken object`);
}

function joinPath(dir: string | URL, name: string): string | URL {
  if (dir instanceof URL) {
    const base = dir.href.endsWith("/") ? dir : new URL(dir.href + "/");
    return new URL(name, base);
  }
  return dir.endsWith("/") || dir.endsWith("\\") ? dir + name : `${dir}/${name}`;
}

async function readText(path: string | URL, name: string, optional: boolean): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (optional && e instanceof Deno.errors.NotFound) return undefined;
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`clip tokenizer: cannot read ${name} (${String(path)}): ${msg}`, { cause: e });
  }
}

function parseJsonObject(text: string, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`clip tokenizer: ${name} is not valid JSON: ${msg}`, { cause: e });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`clip tokenizer: ${name} must hold a JSON object`);
  }
  return v as Record<string, unknown>;
}

/**
 * HF's slow `CLIPTokenizer` (no-`ftfy` path) in TypeScript: byte-level BPE over `vocab.json` +
 * `merges.txt`, with BOS/EOS/pad ids looked up by string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClipTokenizer } from "./clip_tokenizer.ts";
 *
 * const vocab = JSON.stringify({
 *   "a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6,
 * });
 * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\na b</w>\n");
 * assert.ok(tok.bosId === 5 && tok.eosId === 6 && tok.padId === 6 && tok.vocabSize === 7);
 * assert.ok(tok.bpeTokens("AB ba").join(" ") === "ab</w> b a</w>");
 * ```
 */
export class ClipTokenizer {
  /** Id of the BOS token (`<|startoftext|>` unless configured otherwise). */
  readonly bosId: number;
  /** Id of the EOS token (`<|endoftext|>` unless configured otherwise). */
  readonly eosId: number;
  /** Id used for right padding (SD's tokenizer pads with `<|endoftext|>`). */
  readonly padId: number;
  /** Number of entries in `vocab.json` (HF `vocab_size`). */
  readonly vocabSize: number;

  readonly #encoder: Map<string, number>;
  readonly #ranks: Map<string, number>;
  readonly #unkId: number | undefined;
  readonly #unkToken: string;
  /** Added tokens split out of the raw text before BPE, longest first. */
  readonly #added: Map<string, number>;
  readonly #cache = new Map<string, string[]>();

  private constructor(
    encoder: Map<string, number>,
    ranks: Map<string, number>,
    special: { bos: number; eos: number; pad: number; unk: number | undefined; unkToken: string },
    added: Map<string, number>,
  ) {
    this.#encoder = encoder;
    this.#ranks = ranks;
    this.bosId = special.bos;
    this.eosId = special.eos;
    this.padId = special.pad;
    this.#unkId = special.unk;
    this.#unkToken = special.unkToken;
    this.#added = added;
    this.vocabSize = encoder.size;
  }

  /**
   * Loads `vocab.json` and `merges.txt` (required) plus `tokenizer_config.json` and
   * `special_tokens_map.json` (optional; `special_tokens_map.json` wins where both name a token,
   * as in HF `from_pretrained`) from a tokenizer folder.
   *
   * @param dir folder path or URL (e.g. a diffusers `tokenizer/` folder)
   * @throws Error naming the file when a required file is missing or a file is corrupt
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ClipTokenizer } from "./clip_tokenizer.ts";
   *
   * // A folder without vocab.json is rejected with an Error naming the file.
   * const err = await ClipTokenizer.load("./no/such/tokenizer").catch((e) => e);
   * assert.ok(err instanceof Error && err.message.includes("vocab.json"));
   *
   * // The golden tiny SD1.5 tokenizer (in the repository; when readable): ids are 77 long, BOS first, EOS-padded.
   * const dir = new URL("../golden/files/models/tiny_sd15/tokenizer/", import.meta.url);
   * const readable = (await Deno.permissions.query({ name: "read", path: dir })).state === "granted";
   * if (readable && (await Deno.stat(new URL("vocab.json", dir)).catch(() => null))) {
   *   const tok = await ClipTokenizer.load(dir);
   *   const ids = tok.encode("a photo of a cat");
   *   assert.ok(ids.length === 77 && ids[0] === tok.bosId && ids[11] === tok.eosId && ids[76] === tok.padId);
   * }
   * ```
   */
  static async load(dir: string | URL): Promise<ClipTokenizer> {
    if (typeof dir !== "string" && !(dir instanceof URL)) {
      throw new TypeError("ClipTokenizer.load: dir must be a string path or a URL");
    }
    const vocab = await readText(joinPath(dir, "vocab.json"), "vocab.json", false);
    const merges = await readText(joinPath(dir, "merges.txt"), "merges.txt", false);
    const cfgText = await readText(joinPath(dir, "tokenizer_config.json"), "tokenizer_config.json", true);
    const mapText = await readText(joinPath(dir, "special_tokens_map.json"), "special_tokens_map.json", true);
    const config: ClipTokenizerConfig = {};
    const keys = [
      ["bos_token", "bosToken"],
      ["eos_token", "eosToken"],
      ["pad_token", "padToken"],
      ["unk_token", "unkToken"],
    ] as const;
    for (const [text, name] of [[cfgText, "tokenizer_config.json"], [mapText, "special_tokens_map.json"]]) {
      if (text === undefined) continue;
      const obj = parseJsonObject(text, name!);
      for (const [key, field] of keys) {
        const v = tokenValue(obj[key], key, name!);
        if (v !== undefined) config[field] = v;
      }
    }
    return ClipTokenizer.fromFiles(vocab!, merges!, config);
  }

  /**
   * Builds a tokenizer from the text of `vocab.json` and `merges.txt`.
   *
   * `merges.txt` is read like HF does: the whole file is stripped, split on newlines, the first line
   * (`#version: 0.2`) is skipped and at most 48 894 merges are kept; the rank of a merge is its line order.
   *
   * @throws Error naming the file when the vocabulary or the merges are corrupt, or a special token
   *   is missing from the vocabulary
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ClipTokenizer } from "./clip_tokenizer.ts";
   *
   * const vocab = JSON.stringify({ "x": 0, "x</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3 });
   * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n");
   * assert.ok(tok.vocabSize === 4 && tok.bosId === 2 && tok.eosId === 3);
   * let threw = false;
   * try {
   *   ClipTokenizer.fromFiles("{not json", "#version: 0.2\n");
   * } catch (e) {
   *   threw = (e as Error).message.includes("vocab.json");
   * }
   * assert.ok(threw);
   * ```
   */
  static fromFiles(vocabJson: string, mergesTxt: string, config: ClipTokenizerConfig = {}): ClipTokenizer {
    const vocabName = config.vocabName ?? "vocab.json";
    const mergesName = config.mergesName ?? "merges.txt";
    if (typeof vocabJson !== "string") {
      throw new TypeError(`ClipTokenizer.fromFiles: ${vocabName} text must be a string`);
    }
    if (typeof mergesTxt !== "string") {
      throw new TypeError(`ClipTokenizer.fromFiles: ${mergesName} text must be a string`);
    }

    const obj = parseJsonObject(vocabJson, vocabName);
    const encoder = new Map<string, number>();
    for (const [tok, id] of Object.entries(obj)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
        throw new Error(
          `clip tokenizer: ${vocabName}: id of ${JSON.stringify(tok)} is not a non-negative int32`,
        );
      }
      encoder.set(tok, id);
    }
    if (encoder.size === 0) throw new Error(`clip tokenizer: ${vocabName} is empty`);

    // Python: open(..., encoding="utf-8") uses universal newlines; .read().strip().split("\n")[1:49152-256-2+1]
    const text = mergesTxt.replace(/\r\n?/g, "\n").replace(PY_STRIP, "");
    if (text.length === 0) throw new Error(`clip tokenizer: ${mergesName} is empty`);
    const lines = text.split("\n").slice(1, 1 + MAX_MERGES);
    const ranks = new Map<string, number>();
    lines.forEach((line, rank) => {
      const parts = pySplit(line);
      if (parts.length === 0) return; // HF keeps an empty tuple that never matches: the rank is just used up
      if (parts.length !== 2) {
        throw new Error(
          `clip tokenizer: ${mergesName}: line ${rank + 2} is not a merge of two symbols: ${JSON.stringify(line)}`,
        );
      }
      const key = `${parts[0]} ${parts[1]}`;
      ranks.set(key, rank); // Python dict(zip(...)): a repeated pair keeps its LAST rank
    });

    const bosToken = config.bosToken ?? DEFAULT_BOS;
    const eosToken = config.eosToken ?? DEFAULT_EOS;
    const padToken = config.padToken ?? DEFAULT_EOS;
    const unkToken = config.unkToken ?? DEFAULT_EOS;
    const need = (tok: string, role: string): number => {
      const id = encoder.get(tok);
      if (id === undefined) {
        throw new Error(
          `clip tokenizer: ${vocabName} has no entry for the ${role} token ${JSON.stringify(tok)}`,
        );
      }
      return id;
    };
    const bos = need(bosToken, "bos");
    const eos = need(eosToken, "eos");
    const pad = need(padToken, "pad");
    const unk = encoder.get(unkToken);
    const added = new Map<string, number>();
    for (const t of [bosToken, eosToken, unkToken, padToken]) {
      if (t.length > 0 && encoder.has(t)) added.set(t, encoder.get(t)!);
    }
    return new ClipTokenizer(encoder, ranks, { bos, eos, pad, unk, unkToken }, added);
  }

  /**
   * HF `tokenizer.tokenize(text)`: the BPE symbols of `text`, without BOS/EOS. Special-token strings typed
   * in the text appear as themselves (e.g. `<|endoftext|>`).
   *
   * @throws TypeError when `text` is not a string
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ClipTokenizer } from "./clip_tokenizer.ts";
   *
   * const vocab = JSON.stringify({ "a": 0, "a</w>": 1, "!": 2, "!</w>": 3, "<|startoftext|>": 4, "<|endoftext|>": 5 });
   * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n");
   * assert.ok(tok.bpeTokens("A!!<|endoftext|>").join(" ") === "a</w> ! !</w> <|endoftext|>");
   * ```
   */
  bpeTokens(text: string): string[] {
    if (typeof text !== "string") throw new TypeError("ClipTokenizer: text must be a string");
    const out: string[] = [];
    for (const seg of this.#splitAdded(text)) {
      if (seg.added) out.push(seg.text);
      else if (seg.text.length > 0) this.#tokenize(seg.text, out);
    }
    return out;
  }

  /**
   * The ids of `text` without BOS/EOS and without truncation (HF `convert_tokens_to_ids(tokenize(text))`).
   *
   * @throws TypeError when `text` is not a string
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ClipTokenizer } from "./clip_tokenizer.ts";
   *
   * const vocab = JSON.stringify({ "a": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3 });
   * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n");
   * assert.ok(tok.tokenIds("a <|startoftext|> aa").join(",") === "1,2,0,1");
   * ```
   */
  tokenIds(text: string): number[] {
    return this.bpeTokens(text).map((t) => this.#toId(t));
  }

  /**
   * HF `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True).input_ids`:
   * `[BOS, ...ids, EOS]`, truncated on the right to `maxLength` (EOS kept last), then right-padded with
   * the pad id when `pad` is true.
   *
   * @throws TypeError when `text` is not a string; RangeError for a bad `maxLength`
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ClipTokenizer } from "./clip_tokenizer.ts";
   *
   * const vocab = JSON.stringify({ "a": 0, "a</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3 });
   * const tok = ClipTokenizer.fromFiles(vocab, "#version: 0.2\n");
   * assert.ok(Array.from(tok.encode("a a", { maxLength: 6 })).join(",") === "2,1,1,3,3,3");
   * assert.ok(Array.from(tok.encode("a a a a", { maxLength: 4 })).join(",") === "2,1,1,3");
   * assert.ok(tok.encode("a", { pad: false }).length === 3);
   * ```
   */
  encode(text: string, options: ClipEncodeOptions = {}): Int32Array {
    if (typeof text !== "string") throw new TypeError("ClipTokenizer: text must be a string");
    const maxLength = options.maxLength ?? 77;
    const pad = options.pad ?? true;
    if (typeof maxLength !== "number" || Number.isNaN(maxLength)) {
      throw new TypeError("ClipTokenizer.encode: maxLength must be a number");
    }
    if (maxLength === Infinity ? pad : !(Number.isInteger(maxLength) && maxLength >= 3)) {
      throw new RangeError(
        `ClipTokenizer.encode: maxLength must be an integer >= 3 (Infinity only with pad: false), got ${maxLength}`,
      );
    }
    let ids = this.tokenIds(text);
    if (ids.length + 2 > maxLength) ids = ids.slice(0, maxLength - 2);
    const n = ids.length + 2;
    const out = new Int32Array(pad ? maxLength : n);
    out[0] = this.bosId;
    out.set(ids, 1);
    out[n - 1] = this.eosId;
    if (pad) out.fill(this.padId, n);
    return out;
  }

  #toId(token: string): number {
    const id = this.#added.get(token) ?? this.#encoder.get(token) ?? this.#unkId;
    if (id === undefined) {
      throw new Error(
        `clip tokenizer: ${JSON.stringify(token)} is not in the vocabulary and the unk token ${
          JSON.stringify(this.#unkToken)
        } is not either`,
      );
    }
    return id;
  }

  /** HF `tokens_trie.split`: cut out added tokens (earliest occurrence first, longest on a tie). */
  #splitAdded(text: string): { text: string; added: boolean }[] {
    const out: { text: string; added: boolean }[] = [];
    let pos = 0;
    while (pos < text.length) {
      let best = -1;
      let bestTok = "";
      for (const tok of this.#added.keys()) {
        const at = text.indexOf(tok, pos);
        if (at < 0) continue;
        if (best < 0 || at < best || (at === best && tok.length > bestTok.length)) {
          best = at;
          bestTok = tok;
        }
      }
      if (best < 0) break;
      if (best > pos) out.push({ text: text.slice(pos, best), added: false });
      out.push({ text: bestTok, added: true });
      pos = best + bestTok.length;
    }
    if (pos < text.length) out.push({ text: text.slice(pos), added: false });
    return out;
  }

  /** HF `CLIPTokenizer._tokenize` (no-ftfy path) for one segment without added tokens. */
  #tokenize(segment: string, out: string[]): void {
    const text = basicClean(segment);
    for (const m of text.matchAll(CLIP_PATTERN)) {
      let piece = "";
      for (const b of UTF8.encode(m[0])) piece += BYTE_ENCODER[b];
      for (const sym of this.#bpe(piece)) out.push(sym);
    }
  }

  /** HF `CLIPTokenizer.bpe` (with its cache, which pre-holds the two CLIP special strings). */
  #bpe(token: string): string[] {
    if (token === DEFAULT_BOS || token === DEFAULT_EOS) return [token];
    const hit = this.#cache.get(token);
    if (hit !== undefined) return hit;
    // Byte-encoded symbols are all in the BMP, so UTF-16 units are code points here.
    let word: string[] = token.split("");
    word[word.length - 1] += "</w>";
    while (word.length > 1) {
      let bestRank = Infinity;
      let first = "";
      let second = "";
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.#ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (bestRank === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i + 1 < word.length && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]);
          i += 1;
        }
      }
      word = merged;
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(token, word);
    return word;
  }
}
