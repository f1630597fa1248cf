// Keeps ffi/symbols.ts and cuda/include/l2d.h in sync: same functions, same arity, same kinds of
// parameters (pointer-ish vs integer of the right width), same result kind.
import assert from "node:assert/strict";
import { ABI_VERSION, symbols } from "../ffi/symbols.ts";

const header = await Deno.readTextFile(new URL("../cuda/include/l2d.h", import.meta.url));

interface CDecl {
  result: string;
  params: string[];
}

function parseHeader(text: string): Map<string, CDecl> {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const decls = new Map<string, CDecl>();
  const re = /L2D_API\s+([\w\s*]+?)\s*\b(l2d_\w+)\s*\(([^)]*)\)\s*;/g;
  for (const m of noComments.matchAll(re)) {
    const params = m[3]!.trim() === "void" ? [] : m[3]!.split(",").map((p) => p.trim()).filter(Boolean);
    decls.set(m[2]!, { result: m[1]!.trim(), params });
  }
  return decls;
}

/** The Deno FFI type family a C type must map to. */
function family(cType: string): string {
  if (cType.includes("*")) return "ptr";
  if (/\b(l2d_status|int32_t)\b/.test(cType)) return "i32";
  if (/\buint32_t\b/.test(cType)) return "u32";
  if (/\buint64_t\b/.test(cType)) return "u64";
  if (/\bint64_t\b/.test(cType)) return "i64";
  return `unknown(${cType})`;
}

function ffiFamily(t: string): string {
  return t === "buffer" || t === "pointer" ? "ptr" : t;
}

Deno.test("ffi symbols match l2d.h exactly", () => {
  const decls = parseHeader(header);
  assert.ok(decls.size > 20, `parsed only ${decls.size} declarations`);
  assert.deepEqual([...Object.keys(symbols)].sort(), [...decls.keys()].sort());
  for (const [name, def] of Object.entries(symbols)) {
    const c = decls.get(name)!;
    const params = def.parameters as readonly string[];
    assert.equal(params.length, c.params.length, `${name}: arity`);
    params.forEach((p, i) =>
      assert.equal(ffiFamily(p), family(c.params[i]!), `${name}: parameter ${i} (${c.params[i]})`)
    );
    assert.equal(ffiFamily(def.result), family(c.result), `${name}: result (${c.result})`);
  }
});

Deno.test("ffi ABI version matches L2D_ABI_VERSION", () => {
  const m = header.match(/#define L2D_ABI_VERSION (\d+)/);
  assert.equal(Number(m?.[1]), ABI_VERSION);
});
