/**
 * Test helper: awaits a promise that must reject with an {@linkcode EngineError} of a given code
 * whose message contains every fragment.
 *
 * @module
 */
import assert from "node:assert/strict";
import { EngineError } from "../../ffi/errors.ts";

/** Asserts `p` rejects with EngineError `code` and a message containing `fragments`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<EngineError> {
  const e = await p.then(() => null, (err) => err);
  assert.ok(e instanceof EngineError, `expected an EngineError, got ${e}`);
  assert.equal(e.code, code, e.message);
  for (const f of fragments) assert.ok(e.message.includes(f), `message lacks "${f}": ${e.message}`);
  return e;
}
