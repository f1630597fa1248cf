/**
 * Positioned reads from an open file. Deno has no pread, so reads are serialised through a
 * promise chain: concurrent `read(name)` calls on one checkpoint must not interleave seek+read.
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";

/** A read-only file handle with bounds-checked, serialised `readAt`. */
export class RandomAccessFile implements Disposable {
  #file: Deno.FsFile | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly path: string, file: Deno.FsFile, readonly size: number) {
    this.#file = file;
  }

  /** Opens `path` read-only and records its size. */
  static async open(path: string): Promise<RandomAccessFile> {
    let file: Deno.FsFile;
    try {
      // Checked BEFORE opening: opening a FIFO blocks until a writer appears (forever), and a device
      // could stream without end. The fstat below catches a file swapped in between.
      if (!(await Deno.stat(path)).isFile) {
        throw new CheckpointError(`Cannot open checkpoint "${path}": not a regular file`);
      }
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(`Cannot open checkpoint "${path}": ${(e as Error).message}`, { cause: e });
    }
    try {
      const stat = await file.stat();
      if (!stat.isFile) throw new CheckpointError(`Cannot open checkpoint "${path}": not a regular file`);
      return new RandomAccessFile(path, file, stat.size);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Reads exactly `length` bytes at `offset`; a range past the end of the file is a {@linkcode CheckpointError}. */
  readAt(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      return Promise.reject(
        new CheckpointError(`Invalid read of ${length} bytes at ${offset} in "${this.path}"`),
      );
    }
    if (offset + length > this.size) {
      return Promise.reject(
        new CheckpointError(
          `Checkpoint "${this.path}" is truncated: needs bytes ${offset}..${offset + length} but has ${this.size}`,
        ),
      );
    }
    const run = this.#queue.then(() => this.#readNow(offset, length));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #readNow(offset: number, length: number): Promise<Uint8Array> {
    const file = this.#file;
    if (!file) throw new CheckpointError(`Checkpoint "${this.path}" is closed`);
    const out = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) {
      const n = await file.read(out.subarray(done));
      // The file shrank after open: report it as truncation instead of looping forever.
      if (n === null || n === 0) {
        throw new CheckpointError(
          `Checkpoint "${this.path}" is truncated: unexpected end of file at ${offset + done}`,
        );
      }
      done += n;
    }
    return out;
  }

  /** Whether {@linkcode close} has been called. */
  get closed(): boolean {
    return this.#file === null;
  }

  /** Closes the handle (idempotent). */
  close(): void {
    const file = this.#file;
    this.#file = null;
    file?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
