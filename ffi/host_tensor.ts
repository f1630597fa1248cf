/**
 * Host-side tensors: the one currency that readers, the golden runner and the
 * FFI layer exchange. Data is raw little-endian bytes in C-contiguous order.
 *
 * @module
 */

/** Element types the readers and the native ABI understand (names as in safetensors). */
export type DType = "F32" | "F16" | "BF16" | "I64" | "I32" | "U8" | "BOOL";

/** Bytes per element of each {@linkcode DType}. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U8: 1,
  BOOL: 1,
};

/** A named-free tensor living in host memory: raw bytes plus dtype and shape. */
export interface HostTensor {
  /** Element type of `data`. */
  dtype: DType;
  /** Dimensions, outermost first. `[]` is a scalar. */
  shape: number[];
  /** C-contiguous little-endian bytes; `data.byteLength === numel(shape) * DTYPE_SIZE[dtype]`. */
  data: Uint8Array;
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Converts an IEEE half (as uint16 bits) to a JS number. */
export function halfToFloat(h: number): number {
  const s = (h & 0x8000) ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Returns the tensor's values as float32 (converting F16/BF16/ints/bool). */
export function toFloat32(t: HostTensor): Float32Array {
  const n = numel(t.shape);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (t.dtype === "F32") {
    if (t.data.byteOffset % 4 === 0) return new Float32Array(t.data.buffer, t.data.byteOffset, n).slice();
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }
  const out = new Float32Array(n);
  switch (t.dtype) {
    case "F16":
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      break;
    case "BF16":
      for (let i = 0; i < n; i++) {
        out[i] = new Float32Array(new Uint32Array([view.getUint16(i * 2, true) << 16]).buffer)[0]!;
      }
      break;
    case "I64":
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      break;
    case "I32":
      for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
      break;
    case "U8":
    case "BOOL":
      for (let i = 0; i < n; i++) out[i] = t.data[i]!;
      break;
  }
  return out;
}

/** Wraps float32 values as a {@linkcode HostTensor} (no copy). */
export function fromFloat32(values: Float32Array, shape: number[]): HostTensor {
  if (values.length !== numel(shape)) {
    throw new RangeError(`Cannot wrap ${values.length} values as shape [${shape}]: expected ${numel(shape)}`);
  }
  return { dtype: "F32", shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}
