/**
 * A restricted, data-only unpickler for `torch.save` state dicts (pickle protocols 2..5).
 *
 * It never imports, executes or calls anything a file names: `GLOBAL`/`STACK_GLOBAL` resolve only
 * against {@linkcode ALLOWED_GLOBALS} (mirroring torch's `weights_only` loader) and turn into inert
 * {@linkcode PickleGlobal} tokens; `REDUCE`/`NEWOBJ` on a token dispatch to a fixed table of pure
 * data constructors. Everything is bounded, so hostile input yields a {@linkcode CheckpointError},
 * never a hang, a crash or a memory blow-up: objects, memo entries, string lengths, and two budgets
 * that scale with the pickle's size (see {@linkcode pickleBudget}): OPERATIONS (one per opcode plus
 * one per element a constructor iterates) and BYTES PRODUCED (strings, bytes, container slots). The
 * budgets matter because memo references (BINGET) cost one byte each yet can feed a big memoised
 * object to a constructor again and again.
 *
 * Value mapping: None → `null`, bool → boolean, int → number (bigint beyond 2^53), float → number,
 * str → string, bytes → Uint8Array, list → array, tuple → frozen array, dict / OrderedDict → Map,
 * set → Set.
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";

/** Globals a weights-only checkpoint may reference (module + "." + name). */
export const ALLOWED_GLOBALS: ReadonlySet<string> = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch.Size",
  "builtins.set",
  "builtins.frozenset",
  "__builtin__.set",
  "_codecs.encode",
  ...[
    "Float",
    "Half",
    "BFloat16",
    "Double",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
  ].map((t) => `torch.${t}Storage`),
]);

/** An allowed global as an inert token; it is only ever compared by name. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What a custom reducer returns for an allowed global (e.g. torch's tensor rebuilders). */
export type Reducer = (args: readonly unknown[], label: string) => unknown;

/** Options of {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** Name quoted in errors (the checkpoint path). */
  label: string;
  /** Resolves `BINPERSID` ids (torch storages); without it, persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Extra constructors for allowed globals, by qualified name; checked before the built-in ones. */
  reducers?: Readonly<Record<string, Reducer>>;
  /** Limit on objects created (default 10 million). */
  maxObjects?: number;
  /** Limit on operations (default: {@linkcode pickleBudget} of the pickle's size). */
  maxOperations?: number;
  /** Limit on bytes produced (default: {@linkcode pickleBudget} of the pickle's size). */
  maxBytesProduced?: number;
}

/**
 * Default budgets for a pickle of `size` bytes. An honest pickle does at most a few operations and
 * produces at most a few bytes per input byte (each element is written once; memo references share,
 * they do not copy), so 4 per byte plus a fixed allowance admits every real checkpoint (an SD1.5
 * state dict's data.pkl is ~100-200 KB) while a pickle that re-feeds memoised objects is stopped
 * after work proportional to its size.
 */
export function pickleBudget(size: number): { operations: number; bytesProduced: number } {
  return { operations: 1_000_000 + 4 * size, bytesProduced: 16 * 1024 * 1024 + 4 * size };
}

/** Default object limit: far above any real state dict, far below what exhausts memory. */
export const DEFAULT_MAX_OBJECTS = 10_000_000;

/** Tuples are frozen arrays, so APPEND on a tuple is caught as malformed input. */
function tuple(items: unknown[]): readonly unknown[] {
  return Object.freeze(items);
}

const BUILTIN_REDUCERS: Readonly<Record<string, Reducer>> = {
  "collections.OrderedDict": (args, label) => {
    if (args.length === 0) return new Map();
    const items = args[0];
    if (args.length === 1 && Array.isArray(items)) {
      const m = new Map();
      for (const kv of items) {
        if (!Array.isArray(kv) || kv.length !== 2) fail(label, "an OrderedDict item that is not a pair");
        m.set(kv[0], kv[1]);
      }
      return m;
    }
    return fail(label, "an OrderedDict built from unsupported arguments");
  },
  "torch.Size": (args, label) => {
    const dims = args[0];
    if (args.length !== 1 || !Array.isArray(dims)) {
      fail(label, "a torch.Size built from unsupported arguments");
    }
    return tuple([...dims]);
  },
  "builtins.set": (args, label) => makeSet(args, label),
  "__builtin__.set": (args, label) => makeSet(args, label),
  "builtins.frozenset": (args, label) => makeSet(args, label),
  "_codecs.encode": (args, label) => {
    // Protocol 2 stores Python 3 bytes as _codecs.encode(latin1 text, "latin1").
    const [text, enc] = args;
    if (typeof text !== "string" || (enc !== "latin1" && enc !== "latin-1")) {
      fail(label, "a _codecs.encode call with unsupported arguments");
    }
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 255) fail(label, "a _codecs.encode call on non-latin1 text");
      out[i] = c;
    }
    return out;
  },
};

function makeSet(args: readonly unknown[], label: string): Set<unknown> {
  if (args.length === 0) return new Set();
  if (args.length === 1 && Array.isArray(args[0])) return new Set(args[0]);
  return fail(label, "a set built from unsupported arguments");
}

function fail(label: string, what: string): never {
  throw new CheckpointError(`Cannot load checkpoint "${label}": its pickle contains ${what}`);
}

/** Names from a file, made safe to quote in an error message. */
function quoteName(s: string): string {
  // Control characters could forge extra lines in logs; replace them instead of quoting raw.
  let clean = "";
  for (const ch of s) clean += ch < " " || ch === "\x7f" ? "?" : ch;
  return clean.length > 200 ? clean.slice(0, 200) + "…" : clean;
}

/** Unpickles `bytes` with the restrictions described in the module doc; returns the top-level object. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  return new Unpickler(bytes, options).run();
}

class Unpickler {
  #b: Uint8Array;
  #v: DataView;
  #pos = 0;
  #stack: unknown[] = [];
  #marks: number[] = [];
  #memo = new Map<number, unknown>();
  #objects = 0;
  #label: string;
  #max: number;
  #operations = 0;
  #maxOperations: number;
  #produced = 0;
  #maxProduced: number;
  #dec = new TextDecoder();

  constructor(bytes: Uint8Array, readonly options: UnpickleOptions) {
    this.#b = bytes;
    this.#v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#label = options.label;
    this.#max = options.maxObjects ?? DEFAULT_MAX_OBJECTS;
    const budget = pickleBudget(bytes.byteLength);
    this.#maxOperations = options.maxOperations ?? budget.operations;
    this.#maxProduced = options.maxBytesProduced ?? budget.bytesProduced;
  }

  /** Counts `n` operations against the budget. */
  #work(n: number): void {
    this.#operations += n;
    if (this.#operations > this.#maxOperations) {
      this.#fail(
        `more than ${this.#maxOperations} operations (the budget for a ${this.#b.byteLength}-byte pickle): ` +
          `it makes memoised objects do unbounded work`,
      );
    }
  }

  /** Counts `n` bytes of output (strings, bytes, container slots) against the budget. */
  #produce(n: number): void {
    this.#produced += n;
    if (this.#produced > this.#maxProduced) {
      this.#fail(
        `more than ${this.#maxProduced} bytes of objects (the budget for a ${this.#b.byteLength}-byte pickle): ` +
          `it amplifies memoised objects`,
      );
    }
  }

  #fail(what: string): never {
    return fail(this.#label, what);
  }

  #need(n: number, what: string): number {
    if (!Number.isSafeInteger(n) || n < 0 || this.#pos + n > this.#b.byteLength) {
      this.#fail(
        `${what} of ${n} bytes at offset ${this.#pos}, more than the ${this.#b.byteLength - this.#pos} bytes left`,
      );
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  #u8(): number {
    return this.#b[this.#need(1, "a truncated opcode argument")]!;
  }
  #u16(): number {
    return this.#v.getUint16(this.#need(2, "a truncated opcode argument"), true);
  }
  #u32(): number {
    return this.#v.getUint32(this.#need(4, "a truncated opcode argument"), true);
  }
  #u64(): number {
    const n = this.#v.getBigUint64(this.#need(8, "a truncated opcode argument"), true);
    // Lengths beyond the remaining bytes are rejected by #need; this only avoids a lossy conversion.
    return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
  }
  #bytes(n: number, what: string): Uint8Array {
    const at = this.#need(n, what);
    return this.#b.subarray(at, at + n);
  }
  #line(): string {
    const end = this.#b.indexOf(0x0a, this.#pos);
    if (end < 0) this.#fail("a GLOBAL name without a terminating newline");
    const s = this.#dec.decode(this.#b.subarray(this.#pos, end));
    this.#pos = end + 1;
    return s;
  }

  #push(v: unknown): void {
    if (++this.#objects > this.#max) this.#fail(`more than ${this.#max} objects, the limit for a checkpoint`);
    this.#stack.push(v);
  }
  #pop(): unknown {
    const floor = this.#marks.length ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= floor) this.#fail(`a stack underflow at offset ${this.#pos - 1}`);
    return this.#stack.pop();
  }
  #top(): unknown {
    const floor = this.#marks.length ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= floor) this.#fail(`a stack underflow at offset ${this.#pos - 1}`);
    return this.#stack[this.#stack.length - 1];
  }
  #popMark(): unknown[] {
    const m = this.#marks.pop();
    if (m === undefined) this.#fail(`an opcode that needs a MARK at offset ${this.#pos - 1} but none is set`);
    return this.#stack.splice(m);
  }
  #memoPut(i: number): void {
    // Every entry is created by an opcode of at least one byte: more entries than bytes means a bug here.
    const limit = Math.min(this.#max, this.#b.byteLength);
    if (this.#memo.size >= limit && !this.#memo.has(i)) {
      this.#fail(`a memo larger than ${limit} entries`);
    }
    this.#memo.set(i, this.#top());
  }
  #memoGet(i: number): void {
    if (!this.#memo.has(i)) this.#fail(`a reference to missing memo entry ${i}`);
    this.#push(this.#memo.get(i));
  }

  #global(module: string, name: string): PickleGlobal {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q)) {
      throw new CheckpointError(
        `Cannot load checkpoint "${this.#label}": it references "${
          quoteName(q)
        }", which is not allowed in a weights-only checkpoint`,
      );
    }
    return new PickleGlobal(module, name);
  }

  #call(fn: unknown, args: unknown): unknown {
    if (!(fn instanceof PickleGlobal)) this.#fail("a call of something that is not an allowed global");
    if (!Array.isArray(args)) this.#fail(`a call of "${fn.qualified}" whose arguments are not a tuple`);
    const r = this.options.reducers?.[fn.qualified] ?? BUILTIN_REDUCERS[fn.qualified];
    if (!r) this.#fail(`a call of "${fn.qualified}", which cannot be constructed here`);
    // A constructor at most iterates (and copies) its arguments' elements: charge that BEFORE it runs,
    // since memoised arguments cost the file nothing to repeat.
    for (const a of args) {
      const n = elementCount(a);
      this.#work(n);
      // Text becomes bytes (1 per character); containers become containers (a slot per element).
      this.#produce(typeof a === "string" ? n : n * SLOT_BYTES);
    }
    return r(args, this.#label);
  }

  #setItems(target: unknown, kv: unknown[]): void {
    if (!(target instanceof Map)) this.#fail("SETITEM(S) on something that is not a dict");
    if (kv.length % 2) this.#fail("SETITEMS with an odd number of items");
    for (let i = 0; i < kv.length; i += 2) target.set(kv[i], kv[i + 1]);
  }

  #append(target: unknown, items: unknown[]): void {
    if (!Array.isArray(target) || Object.isFrozen(target)) {
      this.#fail("APPEND(S) on something that is not a list");
    }
    if (items.includes(target)) this.#fail("a list that contains itself");
    for (const it of items) target.push(it);
  }

  #str(n: number): string {
    const bytes = this.#bytes(n, "a string"); // bounds first: a length past the end is truncation
    this.#produce(2 * n);
    return this.#dec.decode(bytes);
  }

  #byteObject(n: number): Uint8Array {
    const bytes = this.#bytes(n, "a bytes object");
    this.#produce(n);
    return bytes.slice();
  }

  run(): unknown {
    const b = this.#b;
    while (this.#pos < b.byteLength) {
      const op = b[this.#pos++]!;
      this.#work(1);
      switch (op) {
        case 0x80: { // PROTO
          const p = this.#u8();
          if (p > 5) this.#fail(`unsupported pickle protocol ${p}`);
          break;
        }
        case 0x95: // FRAME: framing is only a read-ahead hint; its length must still fit.
          if (this.#u64() > b.byteLength - this.#pos) {
            this.#fail("a FRAME longer than the rest of the pickle");
          }
          break;
        case 0x2e: { // STOP
          if (this.#marks.length) this.#fail("a MARK that is never closed");
          const v = this.#pop();
          if (this.#stack.length) this.#fail("leftover objects on the stack at STOP");
          return v;
        }
        case 0x28: // MARK
          if (this.#marks.length >= this.#max) this.#fail("too many nested MARKs");
          this.#marks.push(this.#stack.length);
          break;
        case 0x30: // POP
          this.#pop();
          break;
        case 0x31: // POP_MARK
          this.#popMark();
          break;
        case 0x32: // DUP
          this.#push(this.#top());
          break;
        case 0x4e: // NONE
          this.#push(null);
          break;
        case 0x88: // NEWTRUE
          this.#push(true);
          break;
        case 0x89: // NEWFALSE
          this.#push(false);
          break;
        case 0x4a: // BININT
          this.#push(this.#v.getInt32(this.#need(4, "a truncated BININT"), true));
          break;
        case 0x4b: // BININT1
          this.#push(this.#u8());
          break;
        case 0x4d: // BININT2
          this.#push(this.#u16());
          break;
        case 0x8a: // LONG1
          this.#push(this.#long(this.#u8()));
          break;
        case 0x8b: { // LONG4
          const n = this.#v.getInt32(this.#need(4, "a truncated LONG4"), true);
          if (n < 0) this.#fail("a LONG4 with a negative length");
          this.#push(this.#long(n));
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          this.#push(this.#v.getFloat64(this.#need(8, "a truncated BINFLOAT"), false));
          break;
        case 0x58: // BINUNICODE
          this.#push(this.#str(this.#u32()));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.#push(this.#str(this.#u8()));
          break;
        case 0x8d: // BINUNICODE8
          this.#push(this.#str(this.#u64()));
          break;
        case 0x54: { // BINSTRING (Python 2 str): bytes as latin1 text
          const s = this.#bytes(this.#v.getInt32(this.#need(4, "a truncated BINSTRING"), true), "a string");
          this.#produce(2 * s.length);
          this.#push(latin1(s));
          break;
        }
        case 0x55: { // SHORT_BINSTRING
          const s = this.#bytes(this.#u8(), "a string");
          this.#produce(2 * s.length);
          this.#push(latin1(s));
          break;
        }
        case 0x42: // BINBYTES
          this.#push(this.#byteObject(this.#u32()));
          break;
        case 0x43: // SHORT_BINBYTES
          this.#push(this.#byteObject(this.#u8()));
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.#push(this.#byteObject(this.#u64()));
          break;
        case 0x7d: // EMPTY_DICT
          this.#push(new Map());
          break;
        case 0x5d: // EMPTY_LIST
          this.#push([]);
          break;
        case 0x29: // EMPTY_TUPLE
          this.#push(tuple([]));
          break;
        case 0x8f: // EMPTY_SET
          this.#push(new Set());
          break;
        case 0x64: { // DICT
          const m = new Map();
          this.#setItems(m, this.#popMark());
          this.#push(m);
          break;
        }
        case 0x6c: // LIST
          this.#push(this.#popMark());
          break;
        case 0x74: // TUPLE
          this.#push(tuple(this.#popMark()));
          break;
        case 0x85: // TUPLE1
          this.#push(tuple([this.#pop()]));
          break;
        case 0x86: { // TUPLE2
          const y = this.#pop(), x = this.#pop();
          this.#push(tuple([x, y]));
          break;
        }
        case 0x87: { // TUPLE3
          const z = this.#pop(), y = this.#pop(), x = this.#pop();
          this.#push(tuple([x, y, z]));
          break;
        }
        case 0x91: // FROZENSET
          this.#push(new Set(this.#popMark()));
          break;
        case 0x90: { // ADDITEMS
          const items = this.#popMark();
          const s = this.#top();
          if (!(s instanceof Set)) this.#fail("ADDITEMS on something that is not a set");
          for (const it of items) s.add(it);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.#pop(), k = this.#pop();
          this.#setItems(this.#top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const kv = this.#popMark();
          this.#setItems(this.#top(), kv);
          break;
        }
        case 0x61: { // APPEND
          const v = this.#pop();
          this.#append(this.#top(), [v]);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.#popMark();
          this.#append(this.#top(), items);
          break;
        }
        case 0x71: // BINPUT
          this.#memoPut(this.#u8());
          break;
        case 0x72: // LONG_BINPUT
          this.#memoPut(this.#u32());
          break;
        case 0x94: // MEMOIZE
          this.#memoPut(this.#memo.size);
          break;
        case 0x68: // BINGET
          this.#memoGet(this.#u8());
          break;
        case 0x6a: // LONG_BINGET
          this.#memoGet(this.#u32());
          break;
        case 0x63: { // GLOBAL
          const module = this.#line();
          const name = this.#line();
          this.#push(this.#global(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.#pop(), module = this.#pop();
          if (typeof module !== "string" || typeof name !== "string") {
            this.#fail("a STACK_GLOBAL whose names are not strings");
          }
          this.#push(this.#global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.#pop(), fn = this.#pop();
          this.#push(this.#call(fn, args));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args), routed to the same fixed constructors
          const args = this.#pop(), cls = this.#pop();
          this.#push(this.#call(cls, args));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.#pop(), args = this.#pop(), cls = this.#pop();
          if (!(kwargs instanceof Map) || kwargs.size) this.#fail("a NEWOBJ_EX with keyword arguments");
          this.#push(this.#call(cls, args));
          break;
        }
        case 0x62: { // BUILD: state of allowed objects (e.g. OrderedDict._metadata) carries no weights
          this.#pop();
          const target = this.#top();
          if (typeof target !== "object" || target === null) this.#fail("a BUILD on a plain value");
          break;
        }
        case 0x51: { // BINPERSID
          const pid = this.#pop();
          if (!this.options.persistentLoad) {
            this.#fail("a persistent id, which this file type does not allow");
          }
          this.#push(this.options.persistentLoad(pid));
          break;
        }
        case 0x69: // INST
        case 0x6f: // OBJ
          this.#fail(
            `an INST/OBJ opcode (class instantiation), which is not allowed in a weights-only checkpoint`,
          );
          break;
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: // EXT4
          this.#fail("an extension-registry opcode, which is not allowed in a weights-only checkpoint");
          break;
        default:
          this.#fail(
            `an unsupported opcode 0x${op.toString(16).padStart(2, "0")} at offset ${this.#pos - 1}`,
          );
      }
    }
    return this.#fail("no STOP opcode (the pickle is truncated)");
  }

  /** Little-endian two's-complement integer of `n` bytes. */
  #long(n: number): number | bigint {
    // Real checkpoints hold small ints; a huge LONG would only cost quadratic BigInt time.
    if (n > 1024) this.#fail(`an integer of ${n} bytes`);
    const bytes = this.#bytes(n, "a LONG");
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    if (bytes[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
}

/** Bytes charged per element a constructor copies (a pointer-sized slot in the new container). */
const SLOT_BYTES = 8;

/** Elements a constructor could iterate in `v` (characters of a string, entries of a container). */
function elementCount(v: unknown): number {
  if (typeof v === "string") return v.length;
  if (Array.isArray(v)) return v.length;
  if (v instanceof Map || v instanceof Set) return v.size;
  if (v instanceof Uint8Array) return v.byteLength;
  return 1;
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}
