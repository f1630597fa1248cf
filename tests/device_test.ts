// Device choice on a machine where CUDA cannot start (this CI machine: no GPU, no driver): asking
// for "cuda" fails at once with ONE line naming the cause and the versions, and "auto" falls back
// to the CPU with one warning per process. With the real native library and its real message.
import assert from "node:assert/strict";
import { Engine, EngineError } from "../mod.ts";
import { cudaUnavailableReason, resolveDevice } from "../ffi/device.ts";
import { backendAvailable } from "../ffi/native.ts";

const cudaWorks = backendAvailable("cuda");

Deno.test({
  name: 'Engine.load(..., {device: "cuda"}) says in one line why CUDA cannot start',
  ignore: cudaWorks,
  fn: async () => {
    // The device is checked before the file is read: the error is about CUDA, not the path.
    const e = await Engine.load("/nonexistent/engine.l2de", { device: "cuda" }).then(() => null, (err) => err);
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${e}`);
    assert.equal(e.code, "UNSUPPORTED", e.message);
    assert.ok(!e.message.includes("\n"), `not one line: ${e.message}`);
    assert.match(e.message, /^Cannot use device "cuda": /);
    // Either this build has no CUDA backend, or it has one and the driver/device is missing: then
    // the cause, both versions and the remedy are named.
    const noBackend = /has no CUDA backend/.test(e.message);
    if (!noBackend) {
      assert.match(
        e.message,
        /CUDA is unavailable: (no NVIDIA driver found|the NVIDIA driver is too old|no CUDA device)/,
      );
      assert.match(e.message, /\(driver: (none|CUDA \d+\.\d+), runtime: CUDA \d+\.\d+\)/);
      assert.match(e.message, /install|update|check/);
    }
    assert.match(e.message, /CPU|cpu|nvcc/);
  },
});

Deno.test({
  name: '"auto" falls back to the CPU and warns once per process with the reason',
  ignore: cudaWorks,
  fn: () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    try {
      assert.equal(resolveDevice("auto"), "cpu");
      assert.equal(resolveDevice(undefined), "cpu");
      assert.equal(resolveDevice("auto"), "cpu");
    } finally {
      console.warn = warn;
    }
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.equal(warnings[0], `live2diff: device "auto" runs on the CPU: ${cudaUnavailableReason()}`);
    assert.equal(resolveDevice("cpu"), "cpu");
    assert.throws(() => resolveDevice("gpu" as "cuda"), TypeError);
  },
});
