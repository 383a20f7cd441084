/** The firewall against nftables on the same port and the same traffic
 * (docs/benchmarks.md#against-nftables). A workload namespace sends UDP datagrams as fast as
 * one sender loop goes, each meeting the last rule of the set (a deny), through the host side
 * of its veth, where either Stratum's port ingress program (with the set compiled into its
 * tables) or an nftables netdev ingress chain on the same device (the same set as a linear
 * chain, or as an interval set of address . port) drops it. Both filters sit at the device's
 * ingress, before the stack; the sender's nanoseconds per datagram are the row's figure. The
 * `-filter` rows subtract, in the same round, the same loop against a tc program that drops at
 * once: the filter's own cost. Rules are the classify
 * benchmark's set (firewall.ts ruleSet) over UDP. Namespaces and pins are removed afterwards. */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachTc, detachPinnedLink } from "../../src/datapath/attach";
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { loadObject } from "../../src/datapath/objects";
import { PortDatapath } from "../../src/datapath/port-datapath";
import type { StoredRule } from "../../src/model/firewall-rule";
import { profileMac } from "../../src/model/network";
import { inNetns } from "../../src/sys/os";
import { ruleSet } from "./firewall";
import { type Benchmark, sh } from "./harness";

const SRC = "10.20.0.2";
const DST = "10.20.0.9";
const DST_MAC = "02:00:0a:14:00:09";
const SEND_MS = 600;

/** The classify benchmark's set over UDP: /24 sources to web ports, then the deny every
 * datagram meets (10.0.0.0/8 to port 22). */
function udpSet(n: number): StoredRule[] {
  return ruleSet(n).map((r) => ({ ...r, proto: "udp" as const }));
}

const port = (r: StoredRule) => (r.dport ? `${r.dport[0]}${r.dport[1] !== r.dport[0] ? `-${r.dport[1]}` : ""}` : "");

/** The set as nftables rules: a linear chain, or an interval set of address . port. */
function nftScript(rules: StoredRule[], shape: "chain" | "sets"): string {
  const head = `table netdev stmbench {\n`;
  const chain = (body: string) =>
    `  chain in {\n    type filter hook ingress device "tpa" priority 0; policy accept;\n${body}  }\n}\n`;
  const last = rules[rules.length - 1] as StoredRule;
  const lastRule = `    ip saddr ${last.src} udp dport ${port(last)} drop\n`;
  const allows = rules.slice(0, -1);
  if (shape === "chain")
    return `${head}${chain(`${allows.map((r) => `    ip saddr ${r.src} udp dport ${port(r)} accept\n`).join("")}${lastRule}`)}`;
  const elements = allows.map((r) => `${r.src} . ${port(r)}`).join(",\n      ");
  return `${head}  set allow {\n    type ipv4_addr . inet_service\n    flags interval\n    elements = {\n      ${elements}\n    }\n  }\n${chain(`    ip saddr . udp dport @allow accept\n${lastRule}`)}`;
}

class NftLab {
  readonly tag = `stmnft${process.pid}`;
  readonly node = `${this.tag}-node`;
  readonly ws = `${this.tag}-ws`;
  readonly pinRoot = `/sys/fs/bpf/${this.tag}`;
  readonly dir = join(tmpdir(), this.tag);
  ifindex = 0;
  dp: PortDatapath | undefined;
  fw: FirewallTables | undefined;
  attached = false;
  nft: string | undefined;

  setup(): void {
    for (const ns of [this.node, this.ws]) sh(["ip", "netns", "add", ns]);
    const mac = profileMac(1, 2);
    sh(["ip", "-n", this.node, "link", "add", "tpa", "type", "veth", "peer", "name", "eth0", "netns", this.ws]);
    sh(["ip", "-n", this.ws, "link", "set", "eth0", "address", mac]);
    sh(["ip", "-n", this.ws, "addr", "add", `${SRC}/24`, "dev", "eth0"]);
    sh(["ip", "-n", this.ws, "link", "set", "eth0", "up"]);
    sh(["ip", "-n", this.ws, "neigh", "add", DST, "lladdr", DST_MAC, "dev", "eth0"]);
    sh(["ip", "-n", this.node, "link", "set", "tpa", "up"]);
    this.ifindex = JSON.parse(sh(["ip", "-n", this.node, "-j", "link", "show", "tpa"]))[0].ifindex;
    sh(["mkdir", "-p", this.dir]);
    this.dp = new PortDatapath(this.pinRoot);
    this.dp.open();
    this.dp.setPort(this.ifindex, { netId: 1, ip4: SRC, mac, cidr4: "10.20.0.0/24", gw4: "10.20.0.1" });
    this.fw = new FirewallTables(this.dp);
  }

  teardown(): void {
    this.dp?.close();
    for (const ns of [this.ws, this.node]) Bun.spawnSync(["ip", "netns", "del", ns]);
    rmSync(this.pinRoot, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stratum's port program with `rules` (in network 1's scope), nothing of nftables. */
  stratum(rules: StoredRule[]): void {
    this.nftOff();
    this.fw?.apply(1, rules, "deny");
    if (!this.attached) inNetns(`/run/netns/${this.node}`, () => this.dp?.attachPort(this.ifindex));
    this.attached = true;
  }

  /** An nftables ruleset on the device, no program. */
  nftables(script: string): void {
    if (this.attached) inNetns(`/run/netns/${this.node}`, () => this.dp?.detachPort(this.ifindex));
    this.attached = false;
    if (this.nft === script) return;
    this.nftOff();
    const f = join(this.dir, "rules.nft");
    writeFileSync(f, script);
    sh(["ip", "netns", "exec", this.node, "nft", "-f", f]);
    this.nft = script;
  }

  nftOff(): void {
    if (this.nft) sh(["ip", "netns", "exec", this.node, "nft", "delete", "table", "netdev", "stmbench"]);
    this.nft = undefined;
  }

  /** The same loop against a tc program that drops at once (the baseline object's
   * stm_drop_tc), neither filter present: the path's own cost. */
  dropFloor(): number {
    if (this.attached) inNetns(`/run/netns/${this.node}`, () => this.dp?.detachPort(this.ifindex));
    this.attached = false;
    this.nftOff();
    const obj = loadObject("baseline");
    const pin = `${this.pinRoot}/floor-link`;
    try {
      inNetns(`/run/netns/${this.node}`, () =>
        attachTc(obj.program("stm_drop_tc").fd, this.ifindex, "ingress", { mode: "tcx", pin }),
      );
      return this.send();
    } finally {
      detachPinnedLink(pin);
      obj.close();
    }
  }

  /** Nanoseconds per datagram of one sender loop, SEND_MS long, all to port 22. */
  send(): number {
    const code = `const s = await Bun.udpSocket({}); const b = new Uint8Array(64); let n = 0;
      const t0 = performance.now(); while (performance.now() - t0 < ${SEND_MS}) { for (let i = 0; i < 64; i++) s.send(b, 22, "${DST}"); n += 64; }
      console.log(((performance.now() - t0) * 1e6) / n); s.close();`;
    const out = sh(["ip", "netns", "exec", this.ws, process.execPath, "-e", code]);
    return Number(out.trim());
  }
}

function vsNft(n: number, shape: "chain" | "sets"): Benchmark {
  const lab = new NftLab();
  const rules = udpSet(n);
  const script = nftScript(rules, shape);
  const name = `fw/vs-nft-${shape}-${n}`;
  const measure = (on: () => void) => {
    on();
    const total = lab.send();
    const floor = lab.dropFloor();
    return { total, filter: total - floor };
  };
  return {
    name,
    unit: "ns/packet",
    rows: [
      { name, unit: "ns/packet", figure: "total" },
      { name: `${name}-filter`, unit: "ns/packet", figure: "filter" },
    ],
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: `Stratum port ingress, ${n} rules (the deny last)`,
      measure: () => measure(() => lab.stratum(rules)),
    },
    baseline: {
      label: `nftables netdev ingress, ${n} rules as ${shape === "chain" ? "a linear chain" : "an interval set of address . port"}`,
      measure: () => measure(() => lab.nftables(script)),
    },
  };
}

export const VS_NFT_BENCHMARKS: Record<string, () => Benchmark> = {
  "fw/vs-nft-chain-1000": () => vsNft(1000, "chain"),
  "fw/vs-nft-sets-1000": () => vsNft(1000, "sets"),
  "fw/vs-nft-chain-10000": () => vsNft(10000, "chain"),
};
