/** Port security against nftables bridge filtering (docs/benchmarks.md#against-nftables): two
 * workloads on one Linux bridge, a sender loop of UDP datagrams from one to the other (each
 * legitimate: it passes either filter and is delivered). Stratum's candidate is its port
 * programs on both ports (ingress of the sender's: MAC, address, ARP/ND checks; egress of the
 * receiver's: isolation and a firewall scope that allows); the baseline is the bridge-family
 * nftables filter a container manager writes for MAC, IPv4 and IPv6 filtering of each
 * workload's port (its source MAC, ARP sender MAC and address, IPv4 and IPv6 source, NA
 * target, no router advertisements, no other EtherType), in a forward chain per port matched
 * by the ingress port's name, as Incus does for security.mac_filtering / ipv4_filtering /
 * ipv6_filtering. The `-filter` row subtracts the same loop through the bare bridge in the same
 * round: each filter's own cost per datagram; the `-hooks` row puts empty programs where
 * Stratum's are, the cost of running any program at the two hooks. Namespaces and pins are
 * removed afterwards. */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachTc } from "../../src/datapath/attach";
import { FirewallTables } from "../../src/datapath/firewall-tables";
import { loadObject } from "../../src/datapath/objects";
import { PortDatapath } from "../../src/datapath/port-datapath";
import { profileMac } from "../../src/model/network";
import type { BpfObject } from "../../src/sys/bpf";
import { inNetns } from "../../src/sys/os";
import { type Benchmark, sh } from "./harness";

const NET = { cidr4: "10.21.0.0/24", gw4: "10.21.0.1", cidr6: "fd21::/64", gw6: "fd21::1" };
const SENDER = { ip4: "10.21.0.2", ip6: "fd21::2", mac: profileMac(1, 2) };
const RECEIVER = { ip4: "10.21.0.9", ip6: "fd21::9", mac: profileMac(1, 9) };
const SEND_MS = 600;

/** One workload port's filter as bridge-family nftables rules, in a chain of its own. */
function nftChain(dev: string, w: { ip4: string; ip6: string; mac: string }): string {
  const hex = w.mac.replaceAll(":", "");
  const on = `iifname "${dev}"`;
  return `  chain port_${dev} {
    type filter hook forward priority -200; policy accept;
    ${on} ether saddr != ${w.mac} drop
    ${on} ether type arp arp saddr ether != ${w.mac} drop
    ${on} ether type arp arp saddr ip != ${w.ip4} drop
    ${on} ether type ip ip saddr != { 0.0.0.0, ${w.ip4} } drop
    ${on} ether type ip6 ip6 saddr != { fe80::/10, ${w.ip6} } drop
    ${on} ether type ip6 icmpv6 type nd-neighbor-advert @nh,528,48 != 0x${hex} drop
    ${on} ether type ip6 icmpv6 type nd-router-advert drop
    ${on} ether type != { arp, ip, ip6 } drop
  }
`;
}

/** Both workloads' ports filtered, as a container manager filters every instance's NIC: a
 * chain each, every frame forwarded meets both. */
function nftScript(): string {
  return `table bridge stmbench {\n${nftChain("tpa", SENDER)}${nftChain("tpb", RECEIVER)}}\n`;
}

class BridgeLab {
  readonly tag = `stmbrf${process.pid}`;
  readonly node = `${this.tag}-node`;
  readonly ws = `${this.tag}-ws`;
  readonly wr = `${this.tag}-wr`;
  readonly pinRoot = `/sys/fs/bpf/${this.tag}`;
  readonly dir = join(tmpdir(), this.tag);
  ifindex = { a: 0, b: 0 };
  dp: PortDatapath | undefined;
  attached: "port" | "empty" | false = false;
  empty: BpfObject | undefined;
  nft = false;

  setup(): void {
    for (const ns of [this.node, this.ws, this.wr]) sh(["ip", "netns", "add", ns]);
    sh(["ip", "-n", this.node, "link", "add", "lab0", "type", "bridge"]);
    sh(["ip", "-n", this.node, "link", "set", "lab0", "up"]);
    for (const [dev, ns, w] of [
      ["tpa", this.ws, SENDER],
      ["tpb", this.wr, RECEIVER],
    ] as const) {
      sh(["ip", "-n", this.node, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      sh(["ip", "-n", ns, "link", "set", "eth0", "address", w.mac]);
      sh(["ip", "-n", ns, "addr", "add", `${w.ip4}/24`, "dev", "eth0"]);
      sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      sh(["ip", "-n", this.node, "link", "set", dev, "master", "lab0", "up"]);
    }
    sh(["ip", "-n", this.ws, "neigh", "add", RECEIVER.ip4, "lladdr", RECEIVER.mac, "dev", "eth0"]);
    // The receiver drops what arrives at its socket layer quietly: no port unreachable back.
    sh(["ip", "netns", "exec", this.wr, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=1000000"]);
    const index = (dev: string) => JSON.parse(sh(["ip", "-n", this.node, "-j", "link", "show", dev]))[0].ifindex;
    this.ifindex = { a: index("tpa"), b: index("tpb") };
    sh(["mkdir", "-p", this.dir]);
    this.dp = new PortDatapath(this.pinRoot);
    this.dp.open();
    this.dp.setPort(this.ifindex.a, { netId: 1, ...NET, ...SENDER });
    this.dp.setPort(this.ifindex.b, { netId: 1, ...NET, ...RECEIVER });
    new FirewallTables(this.dp).apply(1, [], "allow");
  }

  teardown(): void {
    this.dp?.close();
    this.empty?.close();
    for (const ns of [this.ws, this.wr, this.node]) Bun.spawnSync(["ip", "netns", "del", ns]);
    rmSync(this.pinRoot, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stratum's port programs on both ports ("port"), empty programs in their place ("empty":
   * the cost of the hooks alone), or none. */
  #ports(on: "port" | "empty" | false): void {
    if (on === this.attached) return;
    inNetns(`/run/netns/${this.node}`, () => {
      for (const i of [this.ifindex.a, this.ifindex.b]) {
        if (this.attached) this.dp?.detachPort(i);
        if (on === "port") this.dp?.attachPort(i);
        if (on === "empty") {
          this.empty ??= loadObject("baseline");
          const fd = this.empty.program("stm_empty_tc").fd;
          for (const dir of ["ingress", "egress"] as const) attachTc(fd, i, dir, { mode: "cls_bpf" });
        }
      }
    });
    this.attached = on;
  }

  #nft(on: boolean): void {
    if (on === this.nft) return;
    if (on) {
      const f = join(this.dir, "bridge.nft");
      writeFileSync(f, nftScript());
      sh(["ip", "netns", "exec", this.node, "nft", "-f", f]);
    } else sh(["ip", "netns", "exec", this.node, "nft", "delete", "table", "bridge", "stmbench"]);
    this.nft = on;
  }

  stratum(): void {
    this.#nft(false);
    this.#ports("port");
  }

  hooks(): void {
    this.#nft(false);
    this.#ports("empty");
  }

  nftables(): void {
    this.#ports(false);
    this.#nft(true);
  }

  bare(): void {
    this.#ports(false);
    this.#nft(false);
  }

  /** Datagrams the receiver's interface took in (the traffic arrived, it was not dropped). */
  received(): number {
    return JSON.parse(sh(["ip", "-n", this.wr, "-j", "-s", "link", "show", "eth0"]))[0].stats64.rx.packets;
  }

  /** Nanoseconds per datagram of one sender loop, SEND_MS long. */
  send(): number {
    const code = `const s = await Bun.udpSocket({}); const b = new Uint8Array(64); let n = 0;
      const t0 = performance.now(); while (performance.now() - t0 < ${SEND_MS}) { for (let i = 0; i < 64; i++) s.send(b, 9, "${RECEIVER.ip4}"); n += 64; }
      console.log(((performance.now() - t0) * 1e6) / n); s.close();`;
    return Number(sh(["ip", "netns", "exec", this.ws, process.execPath, "-e", code]).trim());
  }

  /** One loop under a filter, its cost beside the bare bridge's; throws when the filter
   * dropped the legitimate traffic (the comparison would be of nothing). */
  measure(on: () => void): { total: number; filter: number } {
    on();
    const before = this.received();
    const total = this.send();
    const got = this.received() - before;
    if (got < 1000) throw new Error(`port/vs-nft-bridge-filter: the receiver took in ${got} datagrams`);
    this.bare();
    const floor = this.send();
    return { total, filter: total - floor };
  }
}

function vsNftBridge(): Benchmark {
  const lab = new BridgeLab();
  const name = "port/vs-nft-bridge-filter";
  return {
    name,
    unit: "ns/packet",
    rows: [
      { name: `${name}-total`, unit: "ns/packet", figure: "total" },
      { name, unit: "ns/packet", figure: "filter" },
      {
        name: "port/vs-nft-bridge-hooks",
        unit: "ns/packet",
        figure: "hooks",
        candidate: "empty programs in the place of Stratum's (the cost of the two hooks alone)",
        baseline: "the same nftables bridge filter",
      },
    ],
    setup: () => lab.setup(),
    teardown: () => lab.teardown(),
    candidate: {
      label: "Stratum's port programs on both ports (port security, isolation, firewall: allow)",
      measure: () => ({ ...lab.measure(() => lab.stratum()), hooks: lab.measure(() => lab.hooks()).filter }),
    },
    baseline: {
      label: "nftables bridge filter on both ports (MAC, ARP, IPv4, IPv6, NA target, RA, EtherType)",
      measure: () => {
        const m = lab.measure(() => lab.nftables());
        return { ...m, hooks: m.filter };
      },
    },
  };
}

export const VS_NFT_BRIDGE_BENCHMARKS: Record<string, () => Benchmark> = {
  "port/vs-nft-bridge-filter": vsNftBridge,
};
