/**
 * The interface every checkpoint reader (safetensors, torch zip) exposes.
 *
 * @module
 */
import type { DType, HostTensor } from "../host_tensor.ts";

/** Dtype and shape of one stored tensor, known without reading its data. */
export interface TensorInfo {
  /** Element type as returned by `read` (torch storages without a {@linkcode DType} are converted). */
  dtype: DType;
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Bytes that `read` returns: `numel(shape) * DTYPE_SIZE[dtype]`. */
  byteLength: number;
}

/** An open checkpoint: names and shapes parsed eagerly, tensor data read on demand. */
export interface CheckpointFile extends Disposable {
  /** Path the file was opened from (quoted in errors). */
  readonly path: string;
  /** Which reader parsed it. */
  readonly format: "safetensors" | "torch";
  /** Tensor names in file order. */
  readonly names: readonly string[];
  /** String metadata (safetensors `__metadata__`; empty for torch files). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Whether `name` is a tensor of this file. */
  has(name: string): boolean;
  /** Dtype/shape of `name`; throws a `CheckpointError` for an unknown name. */
  info(name: string): TensorInfo;
  /** Reads just this tensor's bytes (C-contiguous, little-endian). */
  read(name: string): Promise<HostTensor>;
  /** Closes the file handle; later `read` calls fail. Idempotent. */
  close(): void;
}
