// The golden pipeline-style cases through the public API on the CPU backend: `pipeline` (every
// intermediate of every call, frame by frame) and `engine_build` (DreamBooth + kohya LoRA fused into
// an engine, then the frames). The other kinds have their own test files.
import assert from "node:assert/strict";
import { runCase } from "../scripts/golden.ts";
import { goldenPath } from "./_fixtures/golden_root.ts";

for (const name of ["pipeline", "engine_build"]) {
  Deno.test(`golden case ${name} passes on the CPU backend`, async () => {
    const lines: string[] = [];
    const summary = await runCase(
      goldenPath(`cases/${name}`),
      { device: "cpu", precision: "fp32" },
      (l) => lines.push(l),
    );
    const failed = summary.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${t.maxAbs} > ${t.bound}`);
    assert.ok(summary.passed, `${summary.error ?? ""}\n${failed.join("\n")}`);
    assert.ok(summary.tensors.length > 20, "too few tensors were compared");
  });
}
