/** The tree is the layering it claims: a file imports its own folder and folders of lower
 * layers only (errors.ts, at the root, from anywhere), and bun:ffi only in src/sys. One
 * exception, type-only: the API contract's view types (api/contract.ts) are what services,
 * observers and tools return, so `import type` of it is allowed from any layer (it is erased:
 * nothing below runs the API's code). The allowed directions are written once, here; a new
 * folder must be placed in a layer before it is used. */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const SRC = join(import.meta.dir, "../../src");

/** Top to bottom. A folder may import folders of the layers below its own, never above or beside. */
const LAYERS: string[][] = [
  ["main"], // src/main.ts: runs the CLI
  ["cli"], // commands; a client of the API (and the agent-less tools)
  ["agent"], // the daemon's wiring: start-up, signals, the loops
  ["api", "web"], // HTTP: contract, routes, listeners; the dashboard
  ["apply"], // declarative documents → plans → services
  ["observe"], // status and metrics: read-only views of everything below
  ["ops", "reconcile", "cluster"], // agent-less tools; kernel ← store; etcd mirror
  ["services", "gateway", "lb"], // one service per resource: validate → store → kernel
  ["backends", "dhcp", "dns"], // attach backends; the address and name servers
  ["store"], // the Store interface and SQLite
  ["datapath"], // BPF objects, maps, attach, test-run
  ["netlink"], // rtnetlink
  ["model", "sys", "types"], // pure domain types and validation; libc/libbpf bindings; ambient declarations
];

const rank = new Map<string, number>();
LAYERS.forEach((names, i) => {
  for (const n of names) rank.set(n, i);
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** The top folder of a path under src/ ("main" for src/main.ts, "errors" for src/errors.ts). */
function folderOf(file: string): string {
  const rel = relative(SRC, file);
  const first = rel.split("/")[0] as string;
  return rel.includes("/") ? first : first.replace(/\.ts$/, "");
}

/** An import or re-export (its specifier, and whether it is type-only), or a require/dynamic import. */
const SPEC =
  /(?:^|\n)\s*(?:(import|export)(\s+type)?\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']|[^\n]*?(?:require|import)\(\s*["'](\.{1,2}\/[^"']+)["'])/g;

interface Edge {
  file: string;
  from: string;
  to: string;
  spec: string;
  typeOnly: boolean;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of walk(SRC)) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(SPEC)) {
      const spec = (m[3] ?? m[4]) as string;
      const target = normalize(join(dirname(file), spec));
      if (!target.startsWith(SRC)) continue; // package.json and the like
      out.push({
        file: relative(SRC, file),
        from: folderOf(file),
        to: folderOf(`${target}.ts`),
        spec,
        typeOnly: m[2] !== undefined,
      });
    }
  }
  return out;
}

test("every folder of src/ has its layer", () => {
  const folders = readdirSync(SRC).filter((f) => statSync(join(SRC, f)).isDirectory());
  for (const f of folders) expect({ folder: f, placed: rank.has(f) }).toEqual({ folder: f, placed: true });
});

test("imports only go down the layers", () => {
  const bad: string[] = [];
  const all = edges();
  expect(all.length).toBeGreaterThan(300);
  for (const e of all) {
    if (e.to === e.from || e.to === "errors") continue;
    if (e.typeOnly && e.spec.endsWith("api/contract")) continue;
    const a = rank.get(e.from);
    const b = rank.get(e.to);
    if (a === undefined || b === undefined || b <= a) bad.push(`${e.file} → ${e.spec} (${e.from} → ${e.to})`);
  }
  expect(bad).toEqual([]);
});

test("bun:ffi is imported in src/sys only", () => {
  const bad = walk(SRC)
    .filter((f) => /from\s+["']bun:ffi["']/.test(readFileSync(f, "utf8")))
    .map((f) => relative(SRC, f))
    .filter((f) => !f.startsWith("sys/"));
  expect(bad).toEqual([]);
});

test("the check catches what it should: an upward import is refused", () => {
  // The same rule on made-up edges: the datapath importing the store, the model netlink.
  const up = (from: string, to: string) => (rank.get(to) as number) <= (rank.get(from) as number);
  expect(up("datapath", "store")).toBe(true);
  expect(up("store", "datapath")).toBe(false);
  expect(up("model", "netlink")).toBe(true);
  expect(up("observe", "reconcile")).toBe(false);
  expect(up("services", "reconcile")).toBe(true);
  // And the parser sees type-only imports apart, and requires and dynamic imports at all.
  const text = 'import type { A } from "../api/contract";\nimport { B } from "../x/y";\nconst c = require("../z/w");\n';
  const got = [...text.matchAll(SPEC)].map((m) => [m[3] ?? m[4], m[2] !== undefined]);
  expect(got).toEqual([
    ["../api/contract", true],
    ["../x/y", false],
    ["../z/w", false],
  ]);
});
