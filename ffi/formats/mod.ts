/**
 * Checkpoint readers: safetensors and `torch.save` zip files behind one {@linkcode CheckpointFile}
 * interface, chosen by the file's magic bytes.
 *
 * @example
 * ```ts ignore
 * import { openCheckpoint } from "./mod.ts";
 * using ckpt = await openCheckpoint("model.safetensors");
 * for (const name of ckpt.names) console.log(name, ckpt.info(name).shape);
 * ```
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";
import { RandomAccessFile } from "./random_access.ts";
import { openSafetensors } from "./safetensors.ts";
import { isLegacyTorchMagic, legacyFormatError, openTorchCheckpoint } from "./torch_checkpoint.ts";
import type { CheckpointFile } from "./types.ts";

export { CheckpointError } from "./errors.ts";
export type { CheckpointFile, TensorInfo } from "./types.ts";
export {
  encodeSafetensors,
  MAX_HEADER_BYTES,
  openSafetensors,
  parseSafetensorsBytes,
  SafetensorsFile,
  writeSafetensors,
} from "./safetensors.ts";
export { openTorchCheckpoint, TorchCheckpointFile } from "./torch_checkpoint.ts";
export { ALLOWED_GLOBALS, unpickle } from "./pickle.ts";
export { openZip, ZipArchive, type ZipEntry } from "./zip.ts";

/** Formats {@linkcode detectFormat} can tell apart. */
export type CheckpointFormat = "safetensors" | "torch" | "torch-legacy" | "unknown";

/** Classifies a file by its first bytes (at least 9 are needed to recognise safetensors). */
export function detectFormat(head: Uint8Array): CheckpointFormat {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    return "torch";
  }
  if (isLegacyTorchMagic(head)) return "torch-legacy";
  // safetensors: u64 header length whose upper bytes are zero for any sane header, then "{".
  if (head.length >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0) return "safetensors";
  return "unknown";
}

/** Opens a safetensors or torch zip checkpoint, dispatching on its magic bytes. */
export async function openCheckpoint(path: string): Promise<CheckpointFile> {
  let head: Uint8Array;
  {
    using file = await RandomAccessFile.open(path);
    head = await file.readAt(0, Math.min(9, file.size));
  }
  switch (detectFormat(head)) {
    case "safetensors":
      return await openSafetensors(path);
    case "torch":
      return await openTorchCheckpoint(path);
    case "torch-legacy":
      throw legacyFormatError(path);
    default:
      throw new CheckpointError(`Checkpoint "${path}" is neither safetensors nor a torch.save zip file`);
  }
}
