/**
 * Hand-made hostile checkpoints of issue 12, one builder per finding, built small enough to write
 * in a test yet (without the readers' budgets) able to make the readers do huge work.
 * Shared by the regression tests and the fuzzer's seeds.
 *
 * @module
 */
import { OP, PickleWriter, writeTensor } from "./pickle_writer.ts";
import { buildTorchZip } from "./zip_writer.ts";

/** `_codecs.encode(S, "latin1")` called `reps` times on one memoised string of `chars` characters. */
export function codecsBombPickle(chars: number, reps: number): Uint8Array {
  const w = new PickleWriter().proto(2);
  w.str("a".repeat(chars)).binput(0).op(OP.POP);
  w.global("_codecs", "encode").binput(1).op(OP.POP);
  w.str("latin1").binput(2).op(OP.POP);
  w.op(OP.EMPTY_LIST);
  for (let i = 0; i < reps; i++) w.binget(1).binget(0).binget(2).op(OP.TUPLE2).op(OP.REDUCE).op(OP.POP);
  return w.stop().bytesOut();
}

/** `builtins.set(L)` called `reps` times on one memoised list of `length` small ints. */
export function setBombPickle(length: number, reps: number): Uint8Array {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_LIST).binput(0).op(OP.MARK);
  for (let i = 0; i < length; i++) w.int(i & 0xff);
  w.op(OP.APPENDS).op(OP.POP);
  w.global("builtins", "set").binput(1).op(OP.POP);
  w.op(OP.EMPTY_LIST);
  for (let i = 0; i < reps; i++) w.binget(1).binget(0).op(OP.TUPLE1).op(OP.REDUCE).op(OP.POP);
  return w.stop().bytesOut();
}

/** 4 float32 elements of storage "0". */
export const TINY_STORAGE = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);

/**
 * A dict DAG `d_k = {K_a: d_{k-1}, K_b: d_{k-1}}` over one tensor, with memoised keys of `keyChars`
 * characters: 2^levels state-dict names of ~levels * keyChars characters each.
 */
export async function nameDagTorch(keyChars: number, levels: number): Promise<Uint8Array> {
  const w = new PickleWriter().proto(2);
  w.str("a".repeat(keyChars)).binput(0).op(OP.POP);
  w.str("b".repeat(keyChars)).binput(1).op(OP.POP);
  w.op(OP.EMPTY_DICT).str("w");
  writeTensor(w, tensorSpec([4], [1])).op(OP.SETITEM).binput(2).op(OP.POP);
  for (let k = 1; k <= levels; k++) {
    w.op(OP.EMPTY_DICT).op(OP.MARK).binget(0).binget(1 + k).binget(1).binget(1 + k).op(OP.SETITEMS).binput(2 + k);
    if (k < levels) w.op(OP.POP);
  }
  return await buildTorchZip("archive", w.stop().bytesOut(), { "0": TINY_STORAGE });
}

/** A torch file whose one tensor "w" views storage "0" (4 floats) with `shape` and `stride`. */
export async function stridedTorch(shape: number[], stride: number[]): Promise<Uint8Array> {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT).str("w");
  writeTensor(w, tensorSpec(shape, stride)).op(OP.SETITEM);
  return await buildTorchZip("archive", w.stop().bytesOut(), { "0": TINY_STORAGE });
}

/** A torch file with one tensor per name, each a full view of storage "0" of `floats` elements. */
export async function namedTorch(names: string[], floats = 4): Promise<Uint8Array> {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT).op(OP.MARK);
  for (const n of names) writeTensor(w.str(n), tensorSpec([floats], [1], floats));
  w.op(OP.SETITEMS);
  const storage = floats === 4 ? TINY_STORAGE : new Uint8Array(4 * floats);
  return await buildTorchZip("archive", w.stop().bytesOut(), { "0": storage });
}

function tensorSpec(shape: number[], stride: number[], storageNumel = 4) {
  return { name: "w", key: "0", storageType: "FloatStorage", storageNumel, offset: 0, shape, stride };
}

/** A safetensors file of `header` (raw JSON text, padded to 8) and `data`. */
export function rawSafetensorsText(header: string, data = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(header);
  const padded = Math.ceil(text.length / 8) * 8;
  const out = new Uint8Array(8 + padded + data.length).fill(0x20, 8, 8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(text, 8);
  out.set(data, 8 + padded);
  return out;
}

/** A safetensors header of one tensor whose shape array holds `dims` ones (~2 bytes per dim). */
export function shapeArraySafetensors(dims: number): Uint8Array {
  const shape = new Array(dims).fill("1").join(",");
  return rawSafetensorsText(`{"w":{"dtype":"F32","shape":[${shape}],"data_offsets":[0,4]}}`, new Uint8Array(4));
}
