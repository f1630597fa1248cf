/**
 * A tiny pickle assembler for building torch-style (and hostile) `data.pkl` files in tests.
 * Methods append opcodes and return `this`, so a pickle reads like its disassembly.
 *
 * @module
 */

/** Opcode bytes used by the tests (see CPython's pickletools). */
export const OP = {
  PROTO: 0x80,
  STOP: 0x2e,
  MARK: 0x28,
  POP: 0x30,
  EMPTY_DICT: 0x7d,
  EMPTY_LIST: 0x5d,
  EMPTY_TUPLE: 0x29,
  LIST: 0x6c,
  DICT: 0x64,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  APPEND: 0x61,
  APPENDS: 0x65,
  BINPUT: 0x71,
  BINGET: 0x68,
  MEMOIZE: 0x94,
  REDUCE: 0x52,
  NEWOBJ: 0x81,
  BUILD: 0x62,
  BINPERSID: 0x51,
  STACK_GLOBAL: 0x93,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BINUNICODE: 0x58,
  SHORT_BINUNICODE: 0x8c,
  FRAME: 0x95,
} as const;

/** Builds pickle bytes opcode by opcode. */
export class PickleWriter {
  #out: number[] = [];

  /** Appends raw bytes. */
  raw(...bytes: number[]): this {
    for (const b of bytes) this.#out.push(b & 0xff);
    return this;
  }

  /** Appends one opcode (and nothing else). */
  op(code: number): this {
    return this.raw(code);
  }

  proto(n = 2): this {
    return this.raw(OP.PROTO, n);
  }

  #u32(n: number): this {
    return this.raw(n, n >>> 8, n >>> 16, n >>> 24);
  }

  /** BINUNICODE with a correct length (a loop, not a spread: strings may be megabytes). */
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.op(OP.BINUNICODE).#u32(b.length);
    for (const x of b) this.#out.push(x);
    return this;
  }

  /** BINUNICODE declaring `length` bytes but carrying only `s` (truncation/overflow tests). */
  strWithLength(s: string, length: number): this {
    return this.op(OP.BINUNICODE).#u32(length).raw(...new TextEncoder().encode(s));
  }

  /** The smallest integer opcode for a non-negative int, LONG1 beyond 2^31. */
  int(n: number | bigint): this {
    const v = BigInt(n);
    if (v >= 0n && v < 256n) return this.raw(0x4b, Number(v));
    if (v >= 0n && v < 65536n) return this.raw(0x4d, Number(v) & 0xff, Number(v) >> 8);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) return this.raw(0x4a).#u32(Number(BigInt.asUintN(32, v)));
    const bytes: number[] = [];
    let x = v;
    do {
      bytes.push(Number(BigInt.asUintN(8, x)));
      x >>= 8n;
    } while (
      !((x === 0n && !(bytes[bytes.length - 1]! & 0x80)) || (x === -1n && bytes[bytes.length - 1]! & 0x80))
    );
    return this.raw(0x8a, bytes.length, ...bytes);
  }

  /** BINFLOAT (big-endian double). */
  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.raw(0x47, ...b);
  }

  /** SHORT_BINBYTES. */
  bytes(b: Uint8Array): this {
    return this.raw(0x43, b.length, ...b);
  }

  /** GLOBAL "module\nname\n". */
  global(module: string, name: string): this {
    return this.raw(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }

  /** SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL. */
  stackGlobal(module: string, name: string): this {
    for (const s of [module, name]) {
      const b = new TextEncoder().encode(s);
      this.raw(OP.SHORT_BINUNICODE, b.length, ...b);
    }
    return this.op(OP.STACK_GLOBAL);
  }

  binput(i: number): this {
    return this.raw(OP.BINPUT, i);
  }

  binget(i: number): this {
    return this.raw(OP.BINGET, i);
  }

  stop(): this {
    return this.op(OP.STOP);
  }

  /** The assembled bytes. */
  bytesOut(): Uint8Array {
    return new Uint8Array(this.#out);
  }
}

/** One tensor of a synthetic torch state dict. */
export interface TorchTensorSpec {
  /** State-dict key. */
  name: string;
  /** Storage key (entry `<root>/data/<key>`). */
  key: string;
  /** torch storage class name, e.g. "FloatStorage". */
  storageType: string;
  /** Elements of the storage (as torch records it). */
  storageNumel: number;
  /** Storage offset in elements. */
  offset: number;
  shape: number[];
  stride: number[];
}

/** Appends `_rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict())` like torch.save. */
export function writeTensor(w: PickleWriter, t: TorchTensorSpec): PickleWriter {
  w.global("torch._utils", "_rebuild_tensor_v2");
  w.op(OP.MARK);
  // Persistent id tuple ("storage", torch.<Type>, key, "cpu", numel).
  w.op(OP.MARK).str("storage").global("torch", t.storageType).str(t.key).str("cpu").int(t.storageNumel).op(
    OP.TUPLE,
  )
    .op(OP.BINPERSID);
  w.int(t.offset);
  w.op(OP.MARK);
  for (const d of t.shape) w.int(d);
  w.op(OP.TUPLE);
  w.op(OP.MARK);
  for (const s of t.stride) w.int(s);
  w.op(OP.TUPLE);
  w.op(OP.NEWFALSE).global("collections", "OrderedDict").op(OP.EMPTY_TUPLE).op(OP.REDUCE);
  return w.op(OP.TUPLE).op(OP.REDUCE);
}

/**
 * A torch.save-style pickle of `{name: tensor}`; with `wrap`, the live2diff.ckpt layout
 * `{"global_step": 0, "state_dict": {...}}`.
 */
export function stateDictPickle(tensors: TorchTensorSpec[], wrap = false): Uint8Array {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT);
  if (wrap) w.op(OP.MARK).str("global_step").int(0).str("state_dict").op(OP.EMPTY_DICT);
  w.op(OP.MARK);
  for (const t of tensors) writeTensor(w.str(t.name), t);
  w.op(OP.SETITEMS);
  if (wrap) w.op(OP.SETITEMS);
  return w.stop().bytesOut();
}
