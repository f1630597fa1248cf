/**
 * Tests for ffi/clip_tokenizer.ts: every golden clip_text prompt (BPE symbols and ids, exact), plus hard
 * text whose expected results were derived from HF's slow CLIPTokenizer rules (no-ftfy path):
 * `PreTrainedTokenizer.tokenize` splits typed special tokens out first, then `BasicTokenizer(strip_accents=False,
 * do_split_on_punc=False)` cleans/lower-cases, then the CLIP regex + byte-level BPE.
 * The golden root can be overridden with the env var L2D_GOLDEN_DIR.
 */
import assert from "node:assert/strict";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ClipTokenizer } from "../ffi/clip_tokenizer.ts";
import { goldenRoot } from "./_fixtures/golden_root.ts";

const GOLDEN = pathToFileURL(goldenRoot() + "/");
const TOK_DIR = new URL("models/tiny_sd15/tokenizer/", GOLDEN);
const CASE_DIR = new URL("cases/clip_text/", GOLDEN);

/** Minimal safetensors reader for one I64 tensor (8-byte LE header length, JSON header, raw data). */
async function readI64(file: URL, name: string): Promise<{ shape: number[]; values: number[] }> {
  const bytes = await Deno.readFile(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const t = header[name];
  assert.ok(t, `${file.pathname} has no tensor ${name}`);
  assert.equal(t.dtype, "I64");
  const [a, b] = t.data_offsets;
  const values: number[] = [];
  for (let off = 8 + n + a; off < 8 + n + b; off += 8) values.push(Number(view.getBigInt64(off, true)));
  return { shape: t.shape, values };
}

const tok = await ClipTokenizer.load(TOK_DIR);
const vocab = JSON.parse(await Deno.readTextFile(new URL("vocab.json", TOK_DIR))) as Record<string, number>;
const BOS = vocab["<|startoftext|>"]!;
const EOS = vocab["<|endoftext|>"]!;

/** HF ids for a list of BPE symbols: BOS, vocab lookups, EOS, then EOS padding to `len`. */
function idsOf(symbols: string[], len = 77): number[] {
  const ids = [
    BOS,
    ...symbols.map((s) => {
      const id = vocab[s];
      assert.ok(id !== undefined, `expected symbol ${JSON.stringify(s)} is not in the vocab`);
      return id;
    }),
    EOS,
  ];
  while (ids.length < len) ids.push(EOS);
  return ids;
}

function checkText(text: string, symbols: string[]): void {
  assert.deepEqual(tok.bpeTokens(text), symbols, `bpeTokens(${JSON.stringify(text)})`);
  assert.deepEqual(Array.from(tok.encode(text)), idsOf(symbols), `encode(${JSON.stringify(text)})`);
}

// ---------------------------------------------------------------------------------------------------------
// Golden data

Deno.test("special ids are looked up by string in vocab.json", () => {
  assert.equal(tok.bosId, BOS);
  assert.equal(tok.eosId, EOS);
  assert.equal(tok.padId, EOS); // special_tokens_map / tokenizer_config: pad_token = <|endoftext|>
  assert.equal(tok.vocabSize, Object.keys(vocab).length);
  assert.notEqual(BOS, 49406); // the tiny vocab is NOT the real one: nothing may be hard-coded
});

Deno.test("golden clip_text: bpe tokens, untruncated ids and input_ids match exactly", async () => {
  const c = JSON.parse(await Deno.readTextFile(new URL("case.json", CASE_DIR))) as {
    prompts: string[];
    bpe_tokens: Record<string, string[]>;
    untruncated_ids: number[][];
  };
  const inIds = await readI64(new URL("inputs.safetensors", CASE_DIR), "input_ids");
  const outIds = await readI64(new URL("outputs.safetensors", CASE_DIR), "input_ids");
  assert.deepEqual(inIds.shape, [c.prompts.length, 77]);
  assert.deepEqual(outIds.values, inIds.values);
  assert.ok(c.prompts.length >= 6);
  c.prompts.forEach((p, i) => {
    assert.deepEqual(tok.bpeTokens(p), c.bpe_tokens[p], `bpe tokens of prompt ${i}`);
    const ids = tok.encode(p);
    assert.ok(ids instanceof Int32Array);
    assert.equal(ids.length, 77);
    assert.deepEqual(Array.from(ids), inIds.values.slice(i * 77, (i + 1) * 77), `input_ids of prompt ${i}`);
    assert.deepEqual(
      Array.from(tok.encode(p, { pad: false, maxLength: Infinity })),
      c.untruncated_ids[i],
      `untruncated ids of prompt ${i}`,
    );
    assert.deepEqual([BOS, ...tok.tokenIds(p), EOS], c.untruncated_ids[i]);
  });
});

Deno.test("golden tokenizer loads from a string path as well as a URL", async () => {
  const t2 = await ClipTokenizer.load(fileURLToPath(TOK_DIR));
  assert.deepEqual(Array.from(t2.encode("a photo of a cat")), Array.from(tok.encode("a photo of a cat")));
  const t3 = await ClipTokenizer.load(fileURLToPath(TOK_DIR).replace(/\/$/, ""));
  assert.equal(t3.bosId, BOS);
});

// ---------------------------------------------------------------------------------------------------------
// Hard text. Byte symbols: GPT-2 bytes_to_unicode maps printable Latin-1 bytes to themselves and the other
// 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in order, e.g. 0x82 -> U+0124 'Ĥ', 0x87 -> U+0129 'ĩ',
// 0x8C -> U+012E 'Į'. Merges of the tiny vocab used below: "a t", "c a", "l e</w>", "b r", "d o", "o n</w>",
// "s t", "r a", "a n", "ca t", "e x", "c k</w>".

Deno.test("accents are kept (strip_accents=False), lower-cased, and NFC-normalised", () => {
  // è = C3 A8, û = C3 BB, é = C3 A9; "br" is a merge, nothing merges with the accent bytes.
  checkText("Crème Brûlée", ["c", "r", "Ã", "¨", "m", "e</w>", "br", "Ã", "»", "l", "Ã", "©", "e</w>"]);
  // decomposed e + U+0300 is composed to è by BasicTokenizer's NFC step
  checkText("Cre\u0300me", ["c", "r", "Ã", "¨", "m", "e</w>"]);
  checkText("ÉCOLE", ["Ã", "©", "c", "o", "le</w>"]); // É lower-cases to é
  checkText("naïve", ["n", "a", "Ã", "¯", "v", "e</w>"]);
  // a + combining acute composes to á (C3 A1); x + U+0301 has no composite: the mark is its own regex piece
  checkText("a\u0301", ["Ã", "¡</w>"]);
  checkText("x\u0301y", ["x</w>", "Ì", "ģ</w>", "y</w>"]);
});

Deno.test("special lower-casing: final sigma, dotted capital I, sharp s", () => {
  // ΟΔΟΣ -> οδος with FINAL sigma ς (CF 82 -> 'Ï','Ĥ'), not σ (CF 83)
  checkText("ΟΔΟΣ", ["Î", "¿", "Î", "´", "Î", "¿", "Ï", "Ĥ</w>"]);
  // İ lower-cases to "i" + U+0307 (CC 87); the combining dot is not \p{L}, so it splits the word
  checkText("İstanbul", ["i</w>", "Ì", "ĩ</w>", "st", "an", "b", "u", "l</w>"]);
  // ß stays ß (C3 9F); capital ẞ lower-cases to ß
  checkText("STRAßE ẞ", ["st", "ra", "Ã", "Ł", "e</w>", "Ã", "Ł</w>"]);
  // U+02BC is a letter (Lm) and joins the word
  checkText("\u02bcnx", ["Ê", "¼", "n", "x</w>"]);
});

Deno.test("CJK ideographs become separate words; kana and hangul do not", () => {
  // 猫 = E7 8C AB, 咪 = E5 92 AA: each ideograph gets spaces around it, so each ends with </w>; "cat" follows
  checkText("猫咪cat", ["ç", "Į", "«</w>", "å", "Ĵ", "ª</w>", "c", "at</w>"]);
  // ねこ (E3 81 AD, E3 81 93) and 고양이 stay single \p{L}+ words
  checkText("ねこ 고양이", [
    "ã",
    "ģ",
    "Ń",
    "ã",
    "ģ",
    "ĵ</w>",
    "ê",
    "³",
    "ł",
    "ì",
    "ĸ",
    "ĳ",
    "ì",
    "Ŀ",
    "´</w>",
  ]);
});

Deno.test("emoji: symbol runs are one piece; ZWJ (category Cf) is deleted", () => {
  // 🐱 = F0 9F 90 B1; 👍🏽 (So + Sk) is one [^\s\p{L}\p{N}]+ piece
  checkText("🐱 cat 👍🏽", [
    "ð",
    "Ł",
    "Ĳ",
    "±</w>",
    "c",
    "at</w>",
    "ð",
    "Ł",
    "ĳ",
    "į",
    "ð",
    "Ł",
    "ı",
    "½</w>",
  ]);
  // 👨‍👩: the U+200D joiner is removed by _clean_text, leaving F0 9F 91 A8 F0 9F 91 A9
  checkText("👨\u200d👩", ["ð", "Ł", "ĳ", "¨", "ð", "Ł", "ĳ", "©</w>"]);
});

Deno.test("punctuation runs stay together (do_split_on_punc=False), but split from letters", () => {
  checkText("wow!!! ...? a,b", [
    "w",
    "o",
    "w</w>",
    "!",
    "!",
    "!</w>",
    ".",
    ".",
    ".",
    "?</w>",
    "a</w>",
    ",</w>",
    "b</w>",
  ]);
  checkText("'s's", ["'", "s</w>", "'", "s</w>"]);
});

Deno.test("numbers: every digit (any \\p{N}) is its own piece", () => {
  // ½ (No) = C2 BD, Ⅻ (Nl) = E2 85 AB, ٣ (Nd) = D9 A3
  checkText("2024 3.14 ½Ⅻ٣", [
    "2</w>",
    "0</w>",
    "2</w>",
    "4</w>",
    "3</w>",
    ".</w>",
    "1</w>",
    "4</w>",
    "Â",
    "½</w>",
    "â",
    "ħ",
    "»</w>",
    "Ù",
    "£</w>",
  ]);
});

Deno.test("contractions are matched after lower-casing", () => {
  checkText("It's DON'T we'll I'M o'clock", [
    "i",
    "t</w>",
    "'",
    "s</w>",
    "d",
    "on</w>",
    "'",
    "t</w>",
    "w",
    "e</w>",
    "'",
    "l",
    "l</w>",
    "i</w>",
    "'",
    "m</w>",
    "o</w>",
    "'</w>",
    "c",
    "l",
    "o",
    "ck</w>",
  ]);
});

Deno.test("empty and whitespace-only prompts: BOS, EOS, then padding", () => {
  for (const text of ["", "  \t\n ", "\u3000\u00a0", "\u200b\u0000"]) {
    assert.deepEqual(tok.bpeTokens(text), []);
    const ids = tok.encode(text);
    assert.equal(ids.length, 77);
    assert.equal(ids[0], BOS);
    assert.equal(ids[1], EOS);
    assert.ok(ids.subarray(2).every((v) => v === tok.padId));
    assert.deepEqual(Array.from(tok.encode(text, { pad: false })), [BOS, EOS]);
  }
});

Deno.test("tabs, newlines and unicode spaces separate words; other control chars are deleted", () => {
  checkText("a\tb\nc\r\nd", ["a</w>", "b</w>", "c</w>", "d</w>"]);
  // NBSP and U+3000 are Zs -> space; U+2028/U+2029 are not Zs but Python's str.split() splits on them
  checkText("a\u00a0b\u3000c\u2028d\u2029e", ["a</w>", "b</w>", "c</w>", "d</w>", "e</w>"]);
  // \v, \f, U+0085 and U+001C are category Cc: deleted, so the letters around them join
  checkText("a\u000bb\fc", ["a", "b", "c</w>"]);
  checkText("a\u0085b\u001cc", ["a", "b", "c</w>"]);
  // U+200B (Cf), NUL and U+FFFD are deleted: "catdogxy"
  checkText("cat\u200bdog\u0000x\ufffdy", ["cat", "do", "g", "x", "y</w>"]);
  // a lone surrogate (Cs) is deleted too
  checkText("\ud83d", []);
});

Deno.test("typed <|endoftext|> / <|startoftext|> become the special ids", () => {
  checkText("a <|endoftext|> cat", ["a</w>", "<|endoftext|>", "c", "at</w>"]);
  checkText("<|startoftext|>cat", ["<|startoftext|>", "c", "at</w>"]);
  checkText("x<|endoftext|>y", ["x</w>", "<|endoftext|>", "y</w>"]);
  checkText("<|startoftext|><|endoftext|>", ["<|startoftext|>", "<|endoftext|>"]);
  // split out BEFORE the regex, so a preceding punctuation run cannot swallow the '<'
  checkText("!!<|endoftext|>", ["!", "!</w>", "<|endoftext|>"]);
  checkText("<<|endoftext|>|", ["<</w>", "<|endoftext|>", "|</w>"]);
  assert.deepEqual(Array.from(tok.encode("a <|endoftext|> cat", { pad: false })), [
    BOS,
    vocab["a</w>"],
    EOS,
    vocab["c"],
    vocab["at</w>"],
    EOS,
  ]);
  assert.deepEqual(Array.from(tok.encode("<|startoftext|>", { pad: false })), [BOS, BOS, EOS]);
});

Deno.test("upper-case special strings: lower-cased by BasicTokenizer, then caught by the CLIP regex", () => {
  // no added-token match (case-sensitive), but "<|endoftext|>" after lower-casing is the regex's first branch
  checkText("<|ENDOFTEXT|>", ["<|endoftext|>"]);
  // ...unless a punctuation run before it takes the '<': then it is plain text
  checkText("!!<|ENDOFTEXT|>", [
    "!",
    "!",
    "<",
    "|</w>",
    "e",
    "n",
    "do",
    "f",
    "t",
    "ex",
    "t</w>",
    "|",
    "></w>",
  ]);
});

Deno.test("over-long prompt: truncated to 77 with EOS at position 76", () => {
  const text = Array.from({ length: 100 }, () => "a").join(" ");
  const ids = tok.encode(text);
  assert.equal(ids.length, 77);
  assert.equal(ids[0], BOS);
  assert.ok(ids.subarray(1, 76).every((v) => v === vocab["a</w>"]));
  assert.equal(ids[76], EOS);
  assert.equal(tok.encode(text, { pad: false }).length, 77);
  assert.equal(tok.encode(text, { pad: false, maxLength: Infinity }).length, 102);
  // exactly 75 tokens fit without truncation; 76 lose the last token
  const t75 = Array.from({ length: 75 }, (_, i) => (i === 74 ? "b" : "a")).join(" ");
  assert.equal(tok.encode(t75)[75], vocab["b</w>"]);
  assert.equal(tok.encode(t75 + " c")[75], vocab["b</w>"]);
  assert.equal(tok.encode(t75 + " c")[76], EOS);
  // smaller maxLength
  assert.deepEqual(Array.from(tok.encode("a photo of a cat", { maxLength: 4 })), [
    BOS,
    vocab["a</w>"],
    vocab["p"],
    EOS,
  ]);
  assert.deepEqual(Array.from(tok.encode("cat", { maxLength: 3 })), [BOS, vocab["c"], EOS]);
});

Deno.test("repeated calls are stable (BPE cache)", () => {
  const text = "masterpiece, best quality, dancing dancing";
  const a = Array.from(tok.encode(text));
  const b = Array.from(tok.encode(text));
  assert.deepEqual(a, b);
});

// ---------------------------------------------------------------------------------------------------------
// Construction from inline files

const MINI_VOCAB = JSON.stringify({
  "a": 0,
  "b": 1,
  "c": 2,
  "a</w>": 3,
  "b</w>": 4,
  "c</w>": 5,
  "ab": 6,
  "abc</w>": 7,
  "<|startoftext|>": 8,
  "<|endoftext|>": 9,
  "bc</w>": 10,
});

Deno.test("fromFiles: merge ranks decide the order; CRLF and trailing blank lines are tolerated", () => {
  // ranks: "a b" = 0, "ab c</w>" = 1, "b c</w>" = 2 -> "abc" = ab + c</w> -> abc</w>
  const t = ClipTokenizer.fromFiles(MINI_VOCAB, "#version: 0.2\r\na b\r\nab c</w>\r\nb c</w>\r\n\r\n");
  assert.deepEqual(t.bpeTokens("ABC"), ["abc</w>"]);
  assert.deepEqual(t.bpeTokens("bc"), ["bc</w>"]);
  // with "b c</w>" ranked first, "abc" becomes a + bc</w> (no "a bc</w>" merge)
  const u = ClipTokenizer.fromFiles(MINI_VOCAB, "#version: 0.2\nb c</w>\na b\nab c</w>\n");
  assert.deepEqual(u.bpeTokens("abc"), ["a", "bc</w>"]);
  // the first line is always skipped, as HF does
  const v = ClipTokenizer.fromFiles(MINI_VOCAB, "a b\nab c</w>\n");
  assert.deepEqual(v.bpeTokens("abc"), ["a", "b", "c</w>"]);
  assert.deepEqual(Array.from(v.encode("abc", { maxLength: 6 })), [8, 0, 1, 5, 9, 9]);
  // a symbol missing from the vocab maps to the unk id (<|endoftext|>)
  assert.deepEqual(Array.from(v.encode("d", { pad: false })), [8, 9, 9]);
});

Deno.test("fromFiles: configured special tokens", () => {
  const t = ClipTokenizer.fromFiles(MINI_VOCAB, "#version: 0.2\n", { padToken: "a" });
  assert.equal(t.padId, 0);
  assert.deepEqual(Array.from(t.encode("b", { maxLength: 5 })), [8, 4, 9, 0, 0]);
  const u = ClipTokenizer.fromFiles(MINI_VOCAB, "#version: 0.2\n", { bosToken: "ab", eosToken: "c" });
  assert.equal(u.bosId, 6);
  assert.equal(u.eosId, 2);
  assert.equal(u.padId, 9);
});

Deno.test("load: special_tokens_map.json overrides tokenizer_config.json; both optional", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vocab.json`, MINI_VOCAB);
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b\n");
    let t = await ClipTokenizer.load(dir);
    assert.deepEqual([t.bosId, t.eosId, t.padId], [8, 9, 9]);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ pad_token: "b", bos_token: { content: "a", __type: "AddedToken" } }),
    );
    t = await ClipTokenizer.load(dir);
    assert.deepEqual([t.bosId, t.eosId, t.padId], [0, 9, 1]);
    await Deno.writeTextFile(`${dir}/special_tokens_map.json`, JSON.stringify({ pad_token: "c" }));
    t = await ClipTokenizer.load(pathToFileURL(dir));
    assert.deepEqual([t.bosId, t.eosId, t.padId], [0, 9, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Bad input

Deno.test("non-string prompts throw TypeError", () => {
  for (const bad of [undefined, null, 42, {}, ["a"], new String("a")]) {
    assert.throws(() => tok.encode(bad as unknown as string), TypeError);
    assert.throws(() => tok.bpeTokens(bad as unknown as string), TypeError);
    assert.throws(() => tok.tokenIds(bad as unknown as string), TypeError);
  }
  assert.throws(() => ClipTokenizer.fromFiles(42 as unknown as string, ""), TypeError);
});

Deno.test("bad maxLength throws RangeError", () => {
  for (const bad of [0, 1, 2, -5, 2.5, Infinity]) {
    assert.throws(() => tok.encode("a", { maxLength: bad }), RangeError);
  }
  assert.throws(() => tok.encode("a", { maxLength: NaN }), TypeError);
});

Deno.test("missing or corrupt files: errors name the file", async () => {
  const dir = await Deno.makeTempDir();
  const rejects = async (re: RegExp) => {
    await assert.rejects(
      () => ClipTokenizer.load(dir),
      (e: unknown) => e instanceof Error && re.test(e.message),
    );
  };
  try {
    await rejects(/vocab\.json/);
    await Deno.writeTextFile(`${dir}/vocab.json`, MINI_VOCAB);
    await rejects(/merges\.txt/);
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b\n");
    await Deno.writeTextFile(`${dir}/vocab.json`, MINI_VOCAB.slice(0, 30));
    await rejects(/vocab\.json/);
    await Deno.writeTextFile(`${dir}/vocab.json`, "[1, 2]");
    await rejects(/vocab\.json/);
    await Deno.writeTextFile(`${dir}/vocab.json`, JSON.stringify({ a: "zero", "<|endoftext|>": 1 }));
    await rejects(/vocab\.json/);
    await Deno.writeTextFile(`${dir}/vocab.json`, JSON.stringify({ a: 0, "<|endoftext|>": 1 }));
    await rejects(/vocab\.json.*startoftext/);
    await Deno.writeTextFile(`${dir}/vocab.json`, MINI_VOCAB);
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b c\n");
    await rejects(/merges\.txt/);
    await Deno.writeTextFile(`${dir}/merges.txt`, "  \n");
    await rejects(/merges\.txt/);
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b\n");
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{oops");
    await rejects(/tokenizer_config\.json/);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ bos_token: 7 }));
    await rejects(/tokenizer_config\.json/);
    await Deno.remove(`${dir}/tokenizer_config.json`);
    await Deno.writeTextFile(`${dir}/special_tokens_map.json`, "nope");
    await rejects(/special_tokens_map\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(() => ClipTokenizer.fromFiles("{", "#version: 0.2\n"), /vocab\.json/);
  assert.throws(() => ClipTokenizer.fromFiles(MINI_VOCAB, "#version: 0.2\nx\n"), /merges\.txt/);
  await assert.rejects(() => ClipTokenizer.load(42 as unknown as string), TypeError);
});
