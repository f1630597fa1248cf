/**
 * Minimal read-only ZIP reader for `torch.save` archives: central directory (with ZIP64 for
 * checkpoints over 4 GB), stored entries only (torch never compresses), lazy byte-range reads.
 * Every size and offset is checked against the file before it is used.
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";
import { RandomAccessFile } from "./random_access.ts";

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** The EOCD comment is at most 65535 bytes, so the search never looks further back than this. */
const EOCD_SEARCH = EOCD_SIZE + 0xffff;
/** A central directory larger than this is hostile (torch writes ~100 bytes per tensor). */
const MAX_CENTRAL_DIR = 512 * 1024 * 1024;

/** One file of the archive, as described by the central directory. */
export interface ZipEntry {
  /** Path inside the archive. */
  name: string;
  /** Compression method (0 = stored, the only one that can be read). */
  method: number;
  /** General-purpose flags (bit 0 = encrypted). */
  flags: number;
  /** Stored size in bytes. */
  compressedSize: number;
  /** Uncompressed size in bytes. */
  size: number;
  /** Offset of the local file header. */
  localHeaderOffset: number;
}

/** An open ZIP archive (see {@linkcode openZip}). */
export class ZipArchive implements Disposable {
  /** Entries by name (first one wins on duplicates). */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  #dataOffsets = new Map<string, Promise<number>>();

  /** @internal use {@linkcode openZip}. */
  constructor(
    readonly file: RandomAccessFile,
    entries: Map<string, ZipEntry>,
    private readonly centralStart: number,
  ) {
    this.entries = entries;
  }

  /** Path of the archive on disk. */
  get path(): string {
    return this.file.path;
  }

  /** The entry called `name`, or a {@linkcode CheckpointError} naming what is missing. */
  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new CheckpointError(`Checkpoint "${this.path}" has no archive entry "${name}"`);
    return e;
  }

  /** Throws unless `entry` can be read (stored, not encrypted, sizes consistent). */
  checkReadable(e: ZipEntry): void {
    const where = `Checkpoint "${this.path}": archive entry "${e.name}"`;
    if (e.flags & 1) throw new CheckpointError(`${where} is encrypted, which is not supported`);
    if (e.method !== 0) {
      throw new CheckpointError(
        `${where} is compressed (method ${e.method}); only stored entries are supported, as torch.save writes them`,
      );
    }
    if (e.compressedSize !== e.size) throw new CheckpointError(`${where} is stored but its sizes disagree`);
  }

  /** Reads `length` bytes at `offset` inside entry `name` (default: the whole entry). */
  async read(name: string, offset = 0, length?: number): Promise<Uint8Array> {
    const e = this.entry(name);
    this.checkReadable(e);
    const len = length ?? e.size - offset;
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0 ||
      offset + len > e.size
    ) {
      throw new CheckpointError(
        `Checkpoint "${this.path}": read of ${len} bytes at ${offset} is outside archive entry "${name}" (${e.size} bytes)`,
      );
    }
    const start = await this.#dataOffset(e);
    return await this.file.readAt(start + offset, len);
  }

  /** Start of `e`'s data, after checking its local header (cached per entry). */
  #dataOffset(e: ZipEntry): Promise<number> {
    let p = this.#dataOffsets.get(e.name);
    if (!p) {
      p = this.#readLocalHeader(e);
      this.#dataOffsets.set(e.name, p);
    }
    return p;
  }

  async #readLocalHeader(e: ZipEntry): Promise<number> {
    const where = `Checkpoint "${this.path}": archive entry "${e.name}"`;
    if (e.localHeaderOffset + LOCAL_SIZE > this.centralStart) {
      throw new CheckpointError(`${where} has a local header past the data area`);
    }
    const h = await this.file.readAt(e.localHeaderOffset, LOCAL_SIZE);
    const v = view(h);
    if (v.getUint32(0, true) !== SIG_LOCAL) {
      throw new CheckpointError(`${where} has no local file header at ${e.localHeaderOffset}`);
    }
    const nameLen = v.getUint16(26, true), extraLen = v.getUint16(28, true);
    const nameStart = e.localHeaderOffset + LOCAL_SIZE;
    const dataStart = nameStart + nameLen + extraLen;
    if (dataStart + e.compressedSize > this.centralStart) {
      throw new CheckpointError(
        `${where} is truncated: its ${e.compressedSize} bytes run past the data area`,
      );
    }
    const localName = decodeName(await this.file.readAt(nameStart, nameLen));
    if (localName !== e.name) throw new CheckpointError(`${where} has a local header named "${localName}"`);
    return dataStart;
  }

  /** Closes the file. */
  close(): void {
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens a ZIP archive and parses its central directory (no entry data is read). */
export async function openZip(path: string): Promise<ZipArchive> {
  return await openZipFile(await RandomAccessFile.open(path));
}

/** Like {@linkcode openZip} on an already open file, which it takes over (closed on failure). */
export async function openZipFile(file: RandomAccessFile): Promise<ZipArchive> {
  try {
    const { entries, centralStart } = await readCentralDirectory(file);
    return new ZipArchive(file, entries, centralStart);
  } catch (e) {
    file.close();
    throw e;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function decodeName(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

function u64(v: DataView, at: number, what: string, path: string): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CheckpointError(`Checkpoint "${path}" has an absurd ZIP ${what} (${n})`);
  }
  return Number(n);
}

async function readCentralDirectory(
  file: RandomAccessFile,
): Promise<{ entries: Map<string, ZipEntry>; centralStart: number }> {
  const path = file.path;
  if (file.size < EOCD_SIZE) {
    throw new CheckpointError(`Checkpoint "${path}" is truncated: too short to be a ZIP archive`);
  }
  const tailLen = Math.min(file.size, EOCD_SEARCH);
  const tail = await file.readAt(file.size - tailLen, tailLen);
  const tv = view(tail);
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    // The comment length must reach exactly to the end of the file, which rules out stray signatures in data.
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) === tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw new CheckpointError(
      `Checkpoint "${path}" is truncated or not a ZIP archive: no end-of-central-directory record`,
    );
  }
  const eocdPos = file.size - tailLen + at;
  let count = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdOffset = tv.getUint32(at + 16, true);
  let cdLimit = eocdPos;
  if (tv.getUint16(at + 4, true) !== 0 || tv.getUint16(at + 6, true) !== 0) {
    throw new CheckpointError(`Checkpoint "${path}" is a multi-disk ZIP archive, which is not supported`);
  }
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // ZIP64: the locator sits right before the classic record and points at the 64-bit record.
    if (eocdPos < 20) {
      throw new CheckpointError(`Checkpoint "${path}" lacks its ZIP64 end-of-central-directory locator`);
    }
    const loc = view(await file.readAt(eocdPos - 20, 20));
    if (loc.getUint32(0, true) !== SIG_ZIP64_LOCATOR) {
      throw new CheckpointError(`Checkpoint "${path}" lacks its ZIP64 end-of-central-directory locator`);
    }
    const z64Pos = u64(loc, 8, "ZIP64 record offset", path);
    if (z64Pos + 56 > eocdPos - 20) {
      throw new CheckpointError(`Checkpoint "${path}" has a ZIP64 record past its locator`);
    }
    const z = view(await file.readAt(z64Pos, 56));
    if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) {
      throw new CheckpointError(`Checkpoint "${path}" has a broken ZIP64 record`);
    }
    count = u64(z, 32, "entry count", path);
    cdSize = u64(z, 40, "central directory size", path);
    cdOffset = u64(z, 48, "central directory offset", path);
    cdLimit = z64Pos;
  }
  if (cdOffset + cdSize > cdLimit) {
    throw new CheckpointError(
      `Checkpoint "${path}" is truncated: its central directory lies past the end of the archive`,
    );
  }
  if (cdSize > MAX_CENTRAL_DIR) {
    throw new CheckpointError(`Checkpoint "${path}" has an absurd central directory (${cdSize} bytes)`);
  }
  if (count * CENTRAL_SIZE > cdSize) {
    throw new CheckpointError(
      `Checkpoint "${path}" declares ${count} entries but its central directory holds fewer`,
    );
  }
  const cd = await file.readAt(cdOffset, cdSize);
  return { entries: parseCentral(cd, count, cdOffset, path), centralStart: cdOffset };
}

function parseCentral(cd: Uint8Array, count: number, cdOffset: number, path: string): Map<string, ZipEntry> {
  const v = view(cd);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_SIZE > cd.byteLength || v.getUint32(p, true) !== SIG_CENTRAL) {
      throw new CheckpointError(`Checkpoint "${path}" has a broken central directory (entry ${i})`);
    }
    const nameLen = v.getUint16(p + 28, true),
      extraLen = v.getUint16(p + 30, true),
      commentLen = v.getUint16(p + 32, true);
    const end = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
    if (end > cd.byteLength) {
      throw new CheckpointError(`Checkpoint "${path}" has a broken central directory (entry ${i})`);
    }
    const name = decodeName(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
    let csize = v.getUint32(p + 20, true),
      size = v.getUint32(p + 24, true),
      offset = v.getUint32(p + 42, true);
    if (csize === 0xffffffff || size === 0xffffffff || offset === 0xffffffff) {
      // ZIP64 extra field: only the saturated fields are present, in this fixed order.
      const z = findExtra(
        cd.subarray(p + CENTRAL_SIZE + nameLen, p + CENTRAL_SIZE + nameLen + extraLen),
        0x0001,
      );
      if (!z) {
        throw new CheckpointError(`Checkpoint "${path}": archive entry "${name}" lacks its ZIP64 sizes`);
      }
      const zv = view(z);
      let q = 0;
      const next = (what: string) => {
        if (q + 8 > z.byteLength) {
          throw new CheckpointError(`Checkpoint "${path}": archive entry "${name}" has a short ZIP64 field`);
        }
        const n = u64(zv, q, what, path);
        q += 8;
        return n;
      };
      if (size === 0xffffffff) size = next("size");
      if (csize === 0xffffffff) csize = next("compressed size");
      if (offset === 0xffffffff) offset = next("local header offset");
    }
    if (offset + LOCAL_SIZE + csize > cdOffset) {
      throw new CheckpointError(
        `Checkpoint "${path}" is truncated: archive entry "${name}" runs past the data area`,
      );
    }
    if (!entries.has(name)) {
      entries.set(name, {
        name,
        method: v.getUint16(p + 10, true),
        flags: v.getUint16(p + 8, true),
        compressedSize: csize,
        size,
        localHeaderOffset: offset,
      });
    }
    p = end;
  }
  checkNoOverlap(entries, path);
  return entries;
}

/**
 * Entries must not share bytes: each entry's local header and data end before the next entry's
 * local header begins. Overlapping entries (one nested in another's data) would let a file of N bytes
 * hold many "storages" of nearly N bytes each, so reading them all would cost many times the file.
 * The local header's name and extra fields only lengthen an entry, so checking with the fixed part
 * alone never refuses a well-formed archive.
 */
function checkNoOverlap(entries: ReadonlyMap<string, ZipEntry>, path: string): void {
  const sorted = [...entries.values()].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!, e = sorted[i]!;
    if (prev.localHeaderOffset + LOCAL_SIZE + prev.compressedSize > e.localHeaderOffset) {
      throw new CheckpointError(
        `Checkpoint "${path}": archive entries "${prev.name}" and "${e.name}" overlap; ` +
          `a ZIP archive's entries never share bytes`,
      );
    }
  }
}

/** The payload of extra field `id`, or undefined. */
function findExtra(extra: Uint8Array, id: number): Uint8Array | undefined {
  const v = view(extra);
  for (let p = 0; p + 4 <= extra.byteLength;) {
    const len = v.getUint16(p + 2, true);
    if (v.getUint16(p, true) === id) return extra.subarray(p + 4, Math.min(p + 4 + len, extra.byteLength));
    p += 4 + len;
  }
  return undefined;
}
