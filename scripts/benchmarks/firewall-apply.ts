/** Rule changes end to end (docs/benchmarks.md#rule-changes), against a real agent.
 *
 * fw/apply-10000: `cenvero-str-ctl firewall import` of 10,000 rules (process spawn to exit,
 * the set replacing a different 10,000 each round), and rows for the steps: the API call alone,
 * the file's YAML parse, validation, compilation, and the kernel writes (compile included) as
 * this process does them on a port object of its own. Baseline of every row: the batch-write
 * floor, the same entries written by one BPF_MAP_UPDATE_BATCH per map.
 * fw/change-1-at-10000: one rule added with 10,000 present (`firewall rule add`, process),
 * the API call alone, and the kernel edit alone; baseline: the batch-write floor of as many
 * entries as the edit writes.
 * fw/api-to-packet: the time from the API call adding an allow rule to the first datagram of a
 * probe stream (one every ~100 µs through a port the network's default denies) reaching the
 * other endpoint, with 10,000 rules in the scope; baseline: the same with none. p50 and p99. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parseDocument } from "yaml";
import { compileScope, type FW_GEN_MAPS } from "../../src/datapath/firewall-maps";
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { loadObject } from "../../src/datapath/objects";
import { parseRule, type RuleSpec, type StoredRule } from "../../src/model/firewall-rule";
import { exportRuleSet, parseRuleSetYaml, ruleSetYaml, validateRuleSet } from "../../src/model/ruleset";
import type { BpfObject } from "../../src/sys/bpf";
import { BenchAgent } from "./agent";
import { ruleSet } from "./firewall";
import { type Benchmark, BINARY, sh } from "./harness";

const N = 10_000;

/** Two different sets of N rules (the ports differ), so each import replaces every rule. */
function variant(v: number): StoredRule[] {
  return ruleSet(N).map((r) => ({
    ...r,
    dport: r.dport ? ([r.dport[0] + v, r.dport[1] + v] as [number, number]) : undefined,
  }));
}

/** Wall-clock milliseconds shared by processes (the probe streams' timestamps). */
const wallMs = () => performance.timeOrigin + performance.now();

/** The batch-write floor: `count` entries of each map as `entries` has them, one batch per map,
 * into a port object of this process (emptied afterwards, untimed). */
function floorMs(obj: BpfObject, entries: Partial<Record<string, Array<[Buffer, Buffer]>>>): number {
  const batches = Object.entries(entries)
    .filter(([, e]) => e?.length)
    .map(([m, e]) => ({
      map: obj.map(m as (typeof FW_GEN_MAPS)[number]),
      keys: Buffer.concat((e as Array<[Buffer, Buffer]>).map(([k]) => k)),
      vals: Buffer.concat((e as Array<[Buffer, Buffer]>).map(([, v]) => v)),
      list: e as Array<[Buffer, Buffer]>,
    }));
  const t0 = performance.now();
  for (const b of batches) b.map.updateBatch(b.keys, b.vals);
  const ms = performance.now() - t0;
  for (const b of batches) for (const [k] of b.list) b.map.delete(k);
  return ms;
}

function applyBench(): Benchmark {
  const agent = new BenchAgent();
  let dir = "";
  const files: string[] = [];
  const texts: string[] = [];
  let obj: BpfObject | undefined;
  let local: FirewallTables | undefined;
  let round = 0;
  const floors: Array<Record<string, Array<[Buffer, Buffer]>>> = [];
  return {
    name: "fw/apply-10000",
    unit: "ms",
    rows: [
      { name: "fw/apply-10000", unit: "ms", figure: "cli", candidate: "firewall import, 10,000 rules (process)" },
      {
        name: "fw/apply-10000-api",
        unit: "ms",
        figure: "api",
        candidate: "the API call alone (agent: validate, compile, write, store)",
      },
      {
        name: "fw/apply-10000-parse",
        unit: "ms",
        figure: "parse",
        candidate: "step: the CLI reading the file (YAML parse and its check)",
      },
      {
        name: "fw/apply-10000-validate",
        unit: "ms",
        figure: "validate",
        candidate: "step: validation of the document (the agent's)",
      },
      { name: "fw/apply-10000-compile", unit: "ms", figure: "compile", candidate: "step: compilation" },
      {
        name: "fw/apply-10000-kernel",
        unit: "ms",
        figure: "kernel",
        candidate: "step: compile and map writes (new generation)",
      },
    ],
    async setup() {
      dir = mkdtempSync(join(tmpdir(), "stm-bench-fw-"));
      for (const v of [0, 1]) {
        const text = ruleSetYaml(exportRuleSet("deny", variant(v)));
        const f = join(dir, `set-${v}.yaml`);
        writeFileSync(f, text);
        files.push(f);
        texts.push(text);
        floors.push(compileScope(variant(v), "deny", 1).entries);
      }
      await agent.start();
      await agent.api.createNetwork({ name: "fwb", cidr: "10.70.0.0/16", gateway: "10.70.0.1" });
      obj = loadObject("port");
      local = new FirewallTables({ map: (n) => (obj as BpfObject).map(n) });
    },
    teardown() {
      obj?.close();
      agent.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
    candidate: {
      label: "see rows",
      async measure() {
        const v = round++ % 2;
        const text = texts[v] as string;
        let t0 = performance.now();
        sh([BINARY, "firewall", "import", "fwb", files[v] as string, "--api-socket", agent.sock]);
        const cli = performance.now() - t0;
        const doc = parseDocument(texts[1 - v] as string).toJS();
        t0 = performance.now();
        await agent.api.importRules("fwb", doc);
        const api = performance.now() - t0;
        t0 = performance.now();
        const { doc: parsed } = parseRuleSetYaml(text, "set.yaml");
        const parse = performance.now() - t0;
        t0 = performance.now();
        validateRuleSet(parsed);
        const validate = performance.now() - t0;
        const rules = variant(v);
        t0 = performance.now();
        compileScope(rules, "deny", 9);
        const compile = performance.now() - t0;
        t0 = performance.now();
        (local as FirewallTables).apply(1, rules, "deny");
        const kernel = performance.now() - t0;
        return { cli, api, parse, validate, compile, kernel };
      },
    },
    baseline: {
      label: "batch-write floor: the same entries, one BPF_MAP_UPDATE_BATCH per map",
      measure() {
        const ms = floorMs(obj as BpfObject, floors[round % 2] as Record<string, Array<[Buffer, Buffer]>>);
        return { cli: ms, api: ms, parse: ms, validate: ms, compile: ms, kernel: ms };
      },
    },
  };
}

/** The rule fw/change-1-at-10000 adds: a new source prefix, to a port the set has. */
function changeSpec(priority: number): RuleSpec {
  return { priority, direction: "egress", src: "10.250.1.0/24", proto: "tcp", dport: 8443, action: "allow" };
}

function changeBench(): Benchmark {
  const agent = new BenchAgent();
  let obj: BpfObject | undefined;
  let local: FirewallTables | undefined;
  const base = variant(0);
  let writes = 0;
  let round = 0;
  let floorEntries: Array<[Buffer, Buffer]> = [];
  return {
    name: "fw/change-1-at-10000",
    unit: "ms",
    rows: [
      {
        name: "fw/change-1-at-10000",
        unit: "ms",
        figure: "cli",
        candidate: "firewall rule add, 10,000 rules present (process)",
      },
      { name: "fw/change-1-at-10000-api", unit: "ms", figure: "api", candidate: "the API call alone" },
      { name: "fw/change-1-at-10000-kernel", unit: "ms", figure: "kernel", candidate: "step: the kernel edit" },
    ],
    async setup() {
      await agent.start();
      await agent.api.createNetwork({ name: "fwc", cidr: "10.70.0.0/16", gateway: "10.70.0.1" });
      await agent.api.importRules("fwc", exportRuleSet("deny", base));
      obj = loadObject("port");
      local = new FirewallTables({ map: (n) => (obj as BpfObject).map(n) });
      local.apply(1, base, "deny");
      const one = { ...parseRule(changeSpec(20000)), id: 99999 };
      writes = local.apply(1, [...base, one], "deny").writes;
      local.apply(1, base, "deny");
      // The floor: as many bitmap entries as the edit writes.
      floorEntries = compileScope(base, "deny", 3).entries.stm_fw_src4.slice(0, writes);
    },
    teardown() {
      obj?.close();
      agent.stop();
    },
    candidate: {
      label: "see rows",
      async measure() {
        const p = 20000 + round++;
        const spec = Object.entries(changeSpec(p)).flatMap(([k, v]) => [`--${k}`, String(v)]);
        let t0 = performance.now();
        const id = Number(sh([BINARY, "firewall", "rule", "add", "fwc", ...spec, "--api-socket", agent.sock]).trim());
        const cli = performance.now() - t0;
        await agent.api.deleteRule("fwc", id);
        t0 = performance.now();
        const added = await agent.api.addRule("fwc", changeSpec(p));
        const api = performance.now() - t0;
        await agent.api.deleteRule("fwc", (added as { id: number }).id);
        const one = { ...parseRule(changeSpec(p)), id: 99999 };
        t0 = performance.now();
        const r = (local as FirewallTables).apply(1, [...base, one], "deny");
        const kernel = performance.now() - t0;
        if (r.how !== "edit") throw new Error(`the benchmark's change compiled a ${r.how}`);
        (local as FirewallTables).apply(1, base, "deny");
        return { cli, api, kernel };
      },
    },
    baseline: {
      // Read once set-up has counted the edit's writes.
      get label() {
        return `batch-write floor: as many entries as the edit writes (${writes})`;
      },
      measure() {
        const ms = floorMs(obj as BpfObject, { stm_fw_src4: floorEntries });
        return { cli: ms, api: ms, kernel: ms };
      },
    },
  };
}

const PROBE_PORT = 9000;

/** A probe stream between two endpoints of one network: a sender in one namespace (a datagram
 * carrying its wall-clock send time every ~100 µs, while running) and a receiver in the other
 * printing the send time of the first datagram after a silence of 30 ms or more. */
class ProbePair {
  sender: Subprocess | undefined;
  receiver: Subprocess<"ignore", "pipe", "ignore"> | undefined;
  lines: string[] = [];
  #wake: (() => void) | undefined;
  constructor(
    readonly from: string,
    readonly to: string,
    readonly toIp: string,
  ) {}

  startReceiver(): void {
    const code = `const s = await Bun.udpSocket({ port: ${PROBE_PORT}, socket: { data(_s, buf) {
      const now = performance.timeOrigin + performance.now();
      if (now - (globalThis.last ?? 0) >= 30) console.log(new DataView(buf.buffer, buf.byteOffset).getFloat64(0, true));
      globalThis.last = now; } } });`;
    const receiver = Bun.spawn(["ip", "netns", "exec", this.to, process.execPath, "-e", code], {
      stdout: "pipe",
      stderr: "ignore",
    });
    this.receiver = receiver;
    (async () => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of receiver.stdout) {
        buf += dec.decode(chunk);
        const parts = buf.split("\n");
        buf = parts.pop() ?? "";
        this.lines.push(...parts.filter(Boolean));
        this.#wake?.();
      }
    })();
  }

  startSender(): void {
    const code = `const s = await Bun.udpSocket({}); const b = new Float64Array(1);
      for (;;) { b[0] = performance.timeOrigin + performance.now(); s.send(b, ${PROBE_PORT}, "${this.toIp}");
        const t = performance.now(); while (performance.now() - t < 0.1) {} }`;
    this.sender = Bun.spawn(["ip", "netns", "exec", this.from, process.execPath, "-e", code], {
      stdout: "ignore",
      stderr: "ignore",
    });
  }

  stopSender(): void {
    this.sender?.kill("SIGKILL");
    this.sender = undefined;
  }

  /** The send time of the first datagram through at or after `t0`. */
  async firstAfter(t0: number, timeoutMs = 3000): Promise<number> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.map(Number).find((x) => x >= t0);
      if (hit !== undefined) return hit;
      if (performance.now() > end) throw new Error("no probe came through after the rule was added");
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 20);
      });
    }
  }

  stop(): void {
    this.stopSender();
    this.receiver?.kill("SIGKILL");
  }
}

function apiToPacketBench(): Benchmark {
  const agent = new BenchAgent();
  const pairs: Record<"big" | "none", ProbePair | undefined> = { big: undefined, none: undefined };
  const ROUNDS = 12;
  let prio = 30000;
  const ctl = (...a: string[]) => sh([BINARY, ...a, "--api-socket", agent.sock]);
  async function samples(which: "big" | "none"): Promise<Record<string, number[]>> {
    const pair = pairs[which] as ProbePair;
    const net = which === "big" ? "fwp" : "fwq";
    const out: number[] = [];
    pair.startSender();
    try {
      await Bun.sleep(100);
      for (let i = 0; i < ROUNDS; i++) {
        pair.lines = [];
        const t0 = wallMs();
        const r = (await agent.api.addRule(net, {
          priority: prio++,
          direction: "both",
          proto: "udp",
          dport: PROBE_PORT,
          action: "allow",
        })) as { id: number };
        out.push((await pair.firstAfter(t0)) - t0);
        await agent.api.deleteRule(net, r.id);
        await Bun.sleep(60); // the stream stops (the flow is cut) and the receiver sees a silence
      }
    } finally {
      pair.stopSender();
    }
    return { p50: out, p99: out };
  }
  return {
    name: "fw/api-to-packet",
    unit: "ms",
    rows: [
      { name: "fw/api-to-packet-p50", unit: "ms", figure: "p50", percentile: 50 },
      { name: "fw/api-to-packet-p99", unit: "ms", figure: "p99", percentile: 99 },
    ],
    async setup() {
      await agent.start();
      for (const [net, cidr, which] of [
        ["fwp", "10.71.0.0/24", "big"],
        ["fwq", "10.72.0.0/24", "none"],
      ] as const) {
        ctl(
          "network",
          "create",
          "--name",
          net,
          "--cidr",
          cidr,
          "--gateway",
          cidr.replace("0/24", "1"),
          "--default-action",
          "deny",
        );
        const a = agent.netns(`${net}a`);
        const b = agent.netns(`${net}b`);
        ctl("network", "attach", net, "--name", `${net}-a`, "--netns", a, "--configure");
        const ep = JSON.parse(
          ctl("network", "attach", net, "--name", `${net}-b`, "--netns", b, "--configure", "-o", "json"),
        );
        pairs[which] = new ProbePair(a, b, ep.ip);
        pairs[which]?.startReceiver();
      }
      await agent.api.importRules("fwp", exportRuleSet("deny", variant(0)));
      await Bun.sleep(300);
    },
    teardown() {
      pairs.big?.stop();
      pairs.none?.stop();
      agent.stop();
    },
    candidate: { label: "API rule add → first probe through, 10,000 rules present", measure: () => samples("big") },
    baseline: { label: "the same, no other rule", measure: () => samples("none") },
  };
}

export const FW_APPLY_BENCHMARKS: Record<string, () => Benchmark> = {
  "fw/apply-10000": applyBench,
  "fw/change-1-at-10000": changeBench,
  "fw/api-to-packet": apiToPacketBench,
};
