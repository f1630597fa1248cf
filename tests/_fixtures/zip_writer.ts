/**
 * A small ZIP writer for building torch.save-like archives (and broken ones) in tests:
 * stored or deflated entries, torch's 64-byte data alignment, optional ZIP64 records.
 *
 * @module
 */

/** One file to put in the archive. */
export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** 0 = stored (default), 8 = deflate (compressed with CompressionStream). */
  method?: 0 | 8;
  /** General-purpose flags to write (e.g. 1 = encrypted). */
  flags?: number;
}

/** Options of {@linkcode buildZip}. */
export interface ZipOptions {
  /** Write ZIP64 extra fields and end records even for small archives. */
  zip64?: boolean;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ZIP polynomial). */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function deflateRaw(b: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([b as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

class Bytes {
  parts: number[] = [];
  u16(n: number) {
    this.parts.push(n & 0xff, (n >>> 8) & 0xff);
    return this;
  }
  u32(n: number) {
    this.parts.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
    return this;
  }
  u64(n: number) {
    return this.u32(n % 2 ** 32).u32(Math.floor(n / 2 ** 32));
  }
  bytes(b: Uint8Array) {
    for (const x of b) this.parts.push(x);
    return this;
  }
}

/** Assembles a ZIP archive from `files`. */
export async function buildZip(files: ZipInput[], opts: ZipOptions = {}): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let pos = 0;
  const central = new Bytes();
  const z64 = !!opts.zip64;
  for (const f of files) {
    const name = new TextEncoder().encode(f.name);
    const payload = f.method === 8 ? await deflateRaw(f.data) : f.data;
    const crc = crc32(f.data);
    // Pad the local extra field so data starts on a 64-byte boundary, as torch's writer does.
    const fixed = pos + 30 + name.length + 4;
    const pad = (64 - (fixed % 64)) % 64;
    const extra = new Bytes().u16(0x4246).u16(pad).bytes(new Uint8Array(pad).fill(0x5a));
    const local = new Bytes().u32(0x04034b50).u16(20).u16(f.flags ?? 0).u16(f.method ?? 0).u16(0).u16(0x21)
      .u32(crc).u32(payload.length).u32(f.data.length).u16(name.length).u16(extra.parts.length).bytes(name);
    local.parts.push(...extra.parts);
    const offset = pos;
    chunks.push(new Uint8Array(local.parts), payload);
    pos += local.parts.length + payload.length;
    const cExtra = z64
      ? new Bytes().u16(0x0001).u16(24).u64(f.data.length).u64(payload.length).u64(offset)
      : new Bytes();
    central.u32(0x02014b50).u16(0x031e).u16(z64 ? 45 : 20).u16(f.flags ?? 0).u16(f.method ?? 0).u16(0).u16(
      0x21,
    )
      .u32(crc).u32(z64 ? 0xffffffff : payload.length).u32(z64 ? 0xffffffff : f.data.length).u16(name.length)
      .u16(cExtra.parts.length).u16(0).u16(0).u16(0).u32(0).u32(z64 ? 0xffffffff : offset).bytes(name);
    central.parts.push(...cExtra.parts);
  }
  const cdOffset = pos, cdSize = central.parts.length;
  chunks.push(new Uint8Array(central.parts));
  pos += cdSize;
  const end = new Bytes();
  if (z64) {
    const z64Pos = pos;
    end.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(files.length).u64(files.length).u64(cdSize)
      .u64(cdOffset);
    end.u32(0x07064b50).u32(0).u64(z64Pos).u32(1);
  }
  end.u32(0x06054b50).u16(0).u16(0).u16(z64 ? 0xffff : files.length).u16(z64 ? 0xffff : files.length)
    .u32(z64 ? 0xffffffff : cdSize).u32(z64 ? 0xffffffff : cdOffset).u16(0);
  chunks.push(new Uint8Array(end.parts));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A torch.save-like archive: `<root>/data.pkl`, `<root>/data/<key>` storages, `<root>/version`. */
export async function buildTorchZip(
  root: string,
  pickle: Uint8Array,
  storages: Record<string, Uint8Array>,
  opts: ZipOptions & { storageMethod?: 0 | 8 } = {},
): Promise<Uint8Array> {
  const files: ZipInput[] = [{ name: `${root}/data.pkl`, data: pickle }];
  for (const [key, data] of Object.entries(storages)) {
    files.push({ name: `${root}/data/${key}`, data, method: opts.storageMethod });
  }
  files.push({ name: `${root}/version`, data: new TextEncoder().encode("3\n") });
  return await buildZip(files, opts);
}
