// Runs the native test programs CMake builds next to the library: the plain-C compile of l2d.h with
// the status/error contract (test_abi_c), Philox known answers in C++ (test_philox) and the own
// tensor-core GEMM's index formulas through an emulation of ldmatrix / mma.sync (test_gemm_tc_layout). The CUDA
// op test (test_cuda_ops) runs when present: without a GPU it reports "no GPU" and passes.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const build = fileURLToPath(new URL("../cuda/build/", import.meta.url));

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

for (const name of ["test_abi_c", "test_philox", "test_gemm_tc_layout", "test_cuda_ops"]) {
  const path = build + name;
  const present = await exists(path);
  Deno.test({
    name: `native program ${name} passes`,
    // test_cuda_ops only exists in CUDA builds; the others are always built.
    ignore: name === "test_cuda_ops" && !present,
    fn: async () => {
      assert.ok(present, `${path} is missing: run \`deno task build:native\``);
      const { code, stdout, stderr } = await new Deno.Command(path, { stdout: "piped", stderr: "piped" }).output();
      const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
      assert.equal(code, 0, text);
      assert.match(text, /ok|no GPU|passed/i);
    },
  });
}
