/** The blocklist at a million prefixes (docs/benchmarks.md#blocklist), against a real agent.
 *
 * blocklist/import-1m: `cenvero-str-ctl firewall blocklist import` of 1,000,000 prefixes (900,000
 * IPv4, 100,000 IPv6) into an empty blocklist, process spawn to exit; the list is cleared
 * between rounds (untimed). Baseline: the kernel's floor, the same prefixes written into the
 * two tries by one BPF_MAP_UPDATE_BATCH each from this process.
 * blocklist/start-1m: the agent's start (spawn to its first API answer, which it gives once its
 * reconcile is done) with the million listed; baseline: the same agent's start with none. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blockKeys } from "../../src/datapath/firewall-maps";
import { loadObject } from "../../src/datapath/objects";
import { parseBlocklistText } from "../../src/model/blocklist";
import type { BpfObject } from "../../src/sys/bpf";
import { BenchAgent } from "./agent";
import { type Benchmark, BINARY, sh } from "./harness";

const V4 = 900_000;
const V6 = 100_000;

/** A million distinct prefixes, one per line: IPv4 /32s and /24s, IPv6 /48s. */
export function millionLines(): string {
  const out: string[] = [];
  for (let i = 0; i < V4; i++) {
    const v = i % 10 === 0 ? (0x60000000 + i * 256) >>> 0 : (0x0b000000 + i * 7) >>> 0;
    out.push(
      i % 10 === 0
        ? `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.0/24`
        : `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`,
    );
  }
  for (let i = 0; i < V6; i++) out.push(`2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::/64`);
  return `${out.join("\n")}\n`;
}

function importBench(): Benchmark {
  const agent = new BenchAgent();
  let dir = "";
  let file = "";
  let obj: BpfObject | undefined;
  let floor: { k4: Buffer; v4: Uint8Array; k6: Buffer; v6: Uint8Array } | undefined;
  return {
    name: "blocklist/import-1m",
    unit: "ms",
    async setup() {
      dir = mkdtempSync(join(tmpdir(), "stm-bench-block-"));
      file = join(dir, "million.txt");
      const text = millionLines();
      writeFileSync(file, text);
      const parsed = parseBlocklistText(text);
      if (parsed.count !== V4 + V6) throw new Error(`${parsed.count} distinct prefixes`);
      const pack = (fam: 4 | 6) => {
        const k = blockKeys(parsed.prefixes, fam);
        return { k, v: new Uint8Array(new Uint32Array(fam === 4 ? V4 : V6).fill(1).buffer) };
      };
      const a = pack(4);
      const b = pack(6);
      floor = { k4: a.k, v4: a.v, k6: b.k, v6: b.v };
      obj = loadObject("port");
      await agent.start();
    },
    teardown() {
      obj?.close();
      agent.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: {
      label: "firewall blocklist import, 1,000,000 prefixes (process)",
      async measure() {
        const t0 = performance.now();
        sh([BINARY, "firewall", "blocklist", "import", file, "--api-socket", agent.sock]);
        const ms = performance.now() - t0;
        sh([BINARY, "firewall", "blocklist", "clear", "--api-socket", agent.sock]);
        return ms;
      },
    },
    baseline: {
      label: "the kernel's floor: one batch update per trie",
      measure() {
        const f = floor as NonNullable<typeof floor>;
        const o = obj as BpfObject;
        const t0 = performance.now();
        o.map("stm_block4").updateBatch(f.k4, f.v4);
        o.map("stm_block6").updateBatch(f.k6, f.v6);
        const ms = performance.now() - t0;
        o.map("stm_block4").deleteBatch(f.k4);
        o.map("stm_block6").deleteBatch(f.k6);
        return ms;
      },
    },
  };
}

/** One start of a halted agent, spawn to its first API answer; halted again after. */
async function startMs(agent: BenchAgent): Promise<number> {
  const ms = await agent.spawn();
  await agent.halt();
  return ms;
}

function startBench(): Benchmark {
  const full = new BenchAgent();
  const empty = new BenchAgent();
  let dir = "";
  return {
    name: "blocklist/start-1m",
    unit: "ms",
    async setup() {
      dir = mkdtempSync(join(tmpdir(), "stm-bench-block-"));
      const file = join(dir, "million.txt");
      writeFileSync(file, millionLines());
      await full.start();
      sh([BINARY, "firewall", "blocklist", "import", file, "--api-socket", full.sock]);
      await full.halt();
      await empty.start();
      await empty.halt();
    },
    teardown() {
      full.stop();
      empty.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: { label: "agent start, 1,000,000 prefixes listed", measure: () => startMs(full) },
    baseline: { label: "agent start, empty blocklist", measure: () => startMs(empty) },
  };
}

export const BLOCKLIST_BENCHMARKS: Record<string, () => Benchmark> = {
  "blocklist/import-1m": importBench,
  "blocklist/start-1m": startBench,
};
