/**
 * A progress bar on stderr for the long steps of the engine tools (hashing, building, downloading).
 * On a terminal it redraws one line; otherwise it prints a line every 10 %, so logs stay short.
 *
 * @module
 */

const encoder = new TextEncoder();

function human(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) v /= 1024, u++;
  return `${v.toFixed(u ? 1 : 0)} ${units[u]}`;
}

/** A labelled bar over `total` units (bytes when `bytes` is set). */
export class Progress {
  #done = 0;
  #last = 0;
  #lastDecile = -1;
  #start = performance.now();
  readonly #tty: boolean;

  constructor(
    readonly label: string,
    public total: number,
    readonly options: { bytes?: boolean; quiet?: boolean } = {},
  ) {
    this.#tty = Deno.stderr.isTerminal();
  }

  /** Advances by `n` units. */
  tick(n: number): void {
    this.set(this.#done + n);
  }

  /** Sets the absolute position. */
  set(done: number): void {
    this.#done = done;
    if (this.options.quiet) return;
    const now = performance.now();
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    if (this.#tty) {
      if (now - this.#last < 100 && frac < 1) return;
      this.#last = now;
      Deno.stderr.writeSync(encoder.encode(`\r${this.#line(frac)}\x1b[K`));
    } else {
      const decile = Math.floor(frac * 10);
      if (decile === this.#lastDecile) return;
      this.#lastDecile = decile;
      Deno.stderr.writeSync(encoder.encode(`${this.#line(frac)}\n`));
    }
  }

  #line(frac: number): string {
    const width = 30, filled = Math.round(frac * width);
    const secs = (performance.now() - this.#start) / 1000;
    const amount = this.options.bytes ? `${human(this.#done)}/${human(this.total)}` : `${this.#done}/${this.total}`;
    return `${this.label.padEnd(22)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${
      (frac * 100).toFixed(0).padStart(3)
    }% ${amount} ${secs.toFixed(1)}s`;
  }

  /** Completes the bar (and ends the terminal line). */
  finish(): void {
    this.set(this.total);
    if (this.#tty && !this.options.quiet) Deno.stderr.writeSync(encoder.encode("\n"));
  }
}
