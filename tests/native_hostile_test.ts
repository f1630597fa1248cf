// Hostile configs and stream options against the native core (issue 12, findings 1 and 11): each
// must be a typed EngineError naming the key, never a crash (SIGFPE), an int wrap (2^32 + 2 read
// as 2) or a silently accepted value. The cases run in a child process
// (tests/_fixtures/hostile_native_cases.ts) so that a native crash fails this test, naming the case.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { HOSTILE_CASES } from "./_fixtures/hostile_native_cases.ts";

const child = fileURLToPath(new URL("./_fixtures/hostile_native_cases.ts", import.meta.url));

Deno.test("native: hostile configs and stream options get typed errors naming the key, in a child process", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", child],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim() !== "");
  const records = lines.map((l) => JSON.parse(l) as { start?: string; name?: string; code?: string; message?: string });
  const lastStarted = records.filter((r) => r.start !== undefined).at(-1)?.start;
  assert.ok(
    out.success,
    `the child died (exit ${out.code}, signal ${out.signal}) during case "${lastStarted}":\n` +
      new TextDecoder().decode(out.stderr).slice(-2000),
  );
  const results = new Map(records.filter((r) => r.name !== undefined).map((r) => [r.name!, r]));
  const failures: string[] = [];
  for (const c of HOSTILE_CASES) {
    const r = results.get(c.name);
    if (!r) {
      failures.push(`${c.name}: no result`);
      continue;
    }
    if (r.code !== c.code) failures.push(`${c.name}: expected ${c.code}, got ${r.code} (${r.message})`);
    for (const f of c.fragments) {
      if (!r.message?.includes(f)) failures.push(`${c.name}: message lacks "${f}": ${r.message}`);
    }
  }
  assert.deepEqual(failures, []);
});
