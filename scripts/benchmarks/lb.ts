/** The load balancer's costs (docs/benchmarks.md#load-balancer).
 *
 * lb/xdp-vs-xdp-tx: packets/s of stm_xdp_lb on an established flow's packet (found in stm_lb_ct,
 * its backend up, destination and checksums rewritten) against an XDP program that swaps the
 * MACs and returns XDP_TX: the ceiling of an XDP program that touches a packet. The VIP's only
 * backend has the VIP's own address and port, so the rewrite writes the bytes it read and every
 * repeat of a test run (which does not restore the packet) does the whole work again.
 * lb/uplink-vs-xdp-tx: the same packet through stm_uplink_in, the wired path (anti-spoofing,
 * the load balancer, no global firewall).
 * lb/dsr-vs-xdp-tx: stm_xdp_lb on the same packet to a DSR VIP: the flow found, only the
 * destination MAC rewritten (to the backend's, which the frame already has, for the same reason).
 *
 * lb/vs-nft-dnat (opt-in): a gateway agent whose uplink (a veth) takes frames of one UDP flow from
 * a generator (live frames, XDP_TX: the kernel's speed) to a backend endpoint, each frame
 * counted where the backend's UDP drops it: translated by the load balancer in the uplink's XDP,
 * against the same agent with no VIP and an nftables DNAT rule (prerouting, conntrack)
 * translating them, and against frames sent to the backend's own address (no translation).
 * The figure: frames per second delivered through the whole path (a path slower than the
 * generator drops the rest at the uplink's ring); the untranslated path is printed.
 *
 * lb/port-out-with-vip: what a VIP on the node costs every other packet: stm_port_out on a
 * TCP segment between two endpoints (no firewall scope) with one VIP on the node (the reply
 * check: is it from a backend's address and port?) against none.
 *
 * lb/rebuild-1000: a VIP of 1,000 backends losing one: LbTables.apply builds its Maglev table
 * (65,537 slots), fills a new map and swaps it in; against one batch write of 65,537 entries
 * into an array map (the kernel's floor for writing a table). Also printed: buildMaglev alone.
 * lb/remap-1-of-1000: the share of slots whose backend changes when 1 of 1,000 goes, against
 * the ideal 1/1,000. */
import { join } from "node:path";
import { LbTables } from "../../src/datapath/lb-tables";
import { loadObject } from "../../src/datapath/objects";
import { ETH_P, ethernet, IPPROTO, ipv4, tcp, udp } from "../../src/datapath/packet";
import { encodeIfindex, encodePort } from "../../src/datapath/port-maps";
import { buildMaglev, remapShare } from "../../src/lb/maglev";
import { withTable } from "../../src/lb/state";
import { BPF_MAP_TYPE, BpfMap, BpfObject, testRun } from "../../src/sys/bpf";
import { withLibbpfLog } from "../../src/sys/ffi";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { BenchAgent } from "./agent";
import type { Benchmark } from "./harness";
import { BINARY, ROOT, sh } from "./harness";

const REPEAT = 200_000;
const VIP = "192.0.2.80";
const CLIENT = "198.51.100.9";
const frame = ethernet(
  { src: "02:00:00:00:99:01", dst: "02:00:00:00:99:02", type: ETH_P.IP },
  ipv4(
    { src: CLIENT, dst: VIP, proto: IPPROTO.UDP },
    udp({ src: CLIENT, dst: VIP, sport: 40000, dport: 80 }, new Uint8Array(18)),
  ),
);
const xdpCtx = () => {
  const c = Buffer.alloc(24);
  c.writeUInt32LE(frame.length, 4);
  c.writeUInt32LE(1, 12); // lo: a test run's device must exist
  return c;
};

function nsPerPacket(fd: number): number {
  const t0 = Bun.nanoseconds();
  testRun(fd, { data: frame, ctx: xdpCtx(), repeat: REPEAT });
  return (Bun.nanoseconds() - t0) / REPEAT;
}

function lbObject(dsr = false): BpfObject {
  const obj = loadObject("port");
  new LbTables({ map: (n) => obj.map(n) }).apply([
    withTable({
      id: 1,
      address: VIP,
      port: 80,
      proto: "udp",
      size: 65537,
      // DSR: the backend's MAC is the frame's destination already.
      backends: [{ id: 1, address: VIP, port: 80, weight: 1, up: true, ...(dsr ? { mac: "02:00:00:00:99:02" } : {}) }],
      ...(dsr ? { dsr: true } : {}),
    }),
  ]);
  const r = testRun(obj.program("stm_xdp_lb").fd, { data: frame, ctx: xdpCtx() });
  if (r.retval !== 2 || obj.map("stm_lb_ct").keys().next().done)
    throw new Error(`the benchmark packet was not load-balanced (verdict ${r.retval})`);
  return obj;
}

function txObject(): BpfObject {
  const path = join(ROOT, "build/bench-bpf/xdp_tx.bpf.o");
  return withLibbpfLog(() =>
    BpfObject.openMem(new Uint8Array(require("node:fs").readFileSync(path)), "stm_xdp_tx").load(),
  );
}

function xdpBench(name: string, prog: "stm_xdp_lb" | "stm_uplink_in", label: string, dsr = false): Benchmark {
  let lb: BpfObject | undefined;
  let tx: BpfObject | undefined;
  return {
    name,
    unit: "Mpps",
    setup() {
      lb = lbObject(dsr);
      tx = txObject();
    },
    teardown() {
      lb?.close();
      tx?.close();
    },
    candidate: { label, measure: () => 1000 / nsPerPacket((lb as BpfObject).program(prog).fd) },
    baseline: {
      label: "an XDP program swapping the MACs, XDP_TX (the ceiling)",
      measure: () => 1000 / nsPerPacket((tx as BpfObject).program("stm_bench_xdp_tx").fd),
    },
  };
}

const GEN_FRAMES = 500_000;
const GEN = join(ROOT, "scripts/benchmarks/lb-gen.ts");

/** The agent, its uplink to the generator's namespace, one backend endpoint (no listener: the
 * kernel drops what it gets, counted on its interface). */
class DnatLab {
  readonly agent = new BenchAgent();
  gen = "";
  backendNs = "";
  backendIp = "";
  nodeMac = "";
  genMac = "";

  ctl(...args: string[]): string {
    return sh([BINARY, ...args, "--api-socket", this.agent.sock]);
  }

  async setup(): Promise<void> {
    this.gen = this.agent.netns("gen");
    this.backendNs = this.agent.netns("b1");
    await this.agent.start(["--uplink", "upl0", "--gateway"], () => {
      const node = this.agent.ns;
      sh(["ip", "-n", node, "link", "add", "upl0", "type", "veth", "peer", "name", "gen0", "netns", this.gen]);
      sh(["ip", "-n", node, "link", "set", "upl0", "up"]);
      sh(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      sh(["ip", "-n", this.gen, "addr", "add", "10.97.0.2/24", "dev", "gen0"]);
      sh(["ip", "-n", this.gen, "link", "set", "gen0", "up"]);
    });
    sh(["ip", "-n", this.agent.ns, "addr", "add", "10.97.0.1/24", "dev", "cnv-user-br0"]);
    this.ctl("network", "create", "--name", "app", "--cidr", "10.73.0.0/24", "--gateway", "10.73.0.1");
    const ep = JSON.parse(
      this.ctl("network", "attach", "app", "--name", "b1", "--netns", this.backendNs, "--configure", "-o", "json"),
    );
    this.backendIp = ep.ip;
    this.nodeMac = sh(["ip", "netns", "exec", this.agent.ns, "cat", "/sys/class/net/cnv-user-br0/address"]).trim();
    this.genMac = sh(["ip", "netns", "exec", this.gen, "cat", "/sys/class/net/gen0/address"]).trim();
    // Every frame on its own through the node (GRO would let nftables judge one of a batch of
    // 64 merged datagrams, the load balancer in XDP sees each), and no ICMP errors back.
    sh(["ip", "netns", "exec", this.agent.ns, "ethtool", "-K", "upl0", "gro", "off"]);
    // nftables at the IP layer, where a gateway routes: with br_netfilter loaded (by another
    // program of the machine) the bridge would hand frames to it and bridge what it translated.
    for (const f of ["iptables", "ip6tables"])
      Bun.spawnSync(["ip", "netns", "exec", this.agent.ns, "sysctl", "-qw", `net.bridge.bridge-nf-call-${f}=0`]);
    sh(["ip", "netns", "exec", this.backendNs, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=1000000"]);
  }

  /** Frames per second through the node to the backend for frames to `dst`. */
  run(dst: string): number {
    const f = ethernet(
      { src: this.genMac, dst: this.nodeMac, type: ETH_P.IP },
      ipv4(
        { src: "10.97.0.2", dst, proto: IPPROTO.UDP },
        udp({ src: "10.97.0.2", dst, sport: 40000, dport: 9 }, new Uint8Array(18)),
      ),
    );
    const rx = () =>
      Number(sh(["ip", "netns", "exec", this.backendNs, "cat", "/sys/class/net/eth0/statistics/rx_packets"]));
    const before = rx();
    const ns = Number(
      sh(["ip", "netns", "exec", this.gen, process.execPath, GEN, f.toString("hex"), String(GEN_FRAMES)]),
    );
    const got = rx() - before;
    // A path slower than the generator drops what it cannot take (the veth's ring is full):
    // what counts is what reached the backend in the time.
    if (got < GEN_FRAMES * 0.01) throw new Error(`only ${got} of ${GEN_FRAMES} frames reached the backend`);
    process.stderr.write(`lb: ${dst}: ${((100 * got) / GEN_FRAMES).toFixed(1)}% of the frames delivered\n`);
    return got / (ns / 1e9) / 1e6;
  }

  nft(script: string): void {
    const r = Bun.spawnSync(["ip", "netns", "exec", this.agent.ns, "nft", "-f", "-"], {
      stdin: new TextEncoder().encode(script),
    });
    if (r.exitCode !== 0) throw new Error(`nft: ${r.stderr.toString().trim()}`);
  }
}

function nftDnatBench(): Benchmark {
  const lab = new DnatLab();
  const VIP_N = "203.0.113.9";
  return {
    name: "lb/vs-nft-dnat",
    unit: "Mpps",
    async setup() {
      await lab.setup();
      lab.ctl("lb", "vip", "add", "flood", "--address", VIP_N, "--port", "9", "--proto", "udp", "--check", "none");
      lab.ctl("lb", "backend", "add", "flood", "--endpoint", "b1");
      process.stderr.write(`lb: untranslated, to the backend itself: ${lab.run(lab.backendIp).toFixed(2)} Mpps\n`);
    },
    teardown: () => lab.agent.stop(),
    candidate: {
      label: "generator → uplink XDP with the load balancer → backend",
      measure: () => lab.run(VIP_N),
    },
    baseline: {
      label: "generator → uplink XDP → nftables DNAT (prerouting, conntrack) → backend",
      measure: () => {
        const other = "203.0.113.10";
        lab.nft(
          `table ip stm_bench {\n  chain pre {\n    type nat hook prerouting priority -100;\n    ip daddr ${other} udp dport 9 dnat to ${lab.backendIp}:9\n  }\n}\n`,
        );
        try {
          return lab.run(other);
        } finally {
          lab.nft("delete table ip stm_bench\n");
        }
      },
    },
  };
}

function portOutBench(): Benchmark {
  let on: BpfObject | undefined;
  let off: BpfObject | undefined;
  const seg = ethernet(
    { src: "02:00:00:00:00:02", dst: "02:00:00:00:00:01", type: ETH_P.IP },
    ipv4(
      { src: "10.0.0.2", dst: "10.0.0.1", proto: IPPROTO.TCP },
      tcp({ src: "10.0.0.2", dst: "10.0.0.1", sport: 80, dport: 40000, flags: 16 }, new Uint8Array(64)),
    ),
  );
  const ctx = alloc(SK_BUFF, { ifindex: 1, ingress_ifindex: 901 });
  const make = (vip: boolean) => {
    const obj = loadObject("port");
    const port = { netId: 1, cidr4: "10.0.0.0/24", gw4: "10.0.0.254", group: 0 };
    obj.map("stm_ports").update(encodeIfindex(1), encodePort({ ...port, ip4: "10.0.0.1", mac: "02:00:00:00:00:01" }));
    obj.map("stm_ports").update(encodeIfindex(901), encodePort({ ...port, ip4: "10.0.0.2", mac: "02:00:00:00:00:02" }));
    if (vip)
      new LbTables({ map: (n) => obj.map(n) }).apply([
        withTable({
          id: 1,
          address: VIP,
          port: 80,
          proto: "tcp",
          size: 13,
          backends: [{ id: 1, address: "10.0.0.9", port: 80, weight: 1, up: true }],
        }),
      ]);
    if (testRun(obj.program("stm_port_out").fd, { data: seg, ctx }).retval !== -1)
      throw new Error("the segment does not pass");
    return obj;
  };
  const ns = (obj: BpfObject) => {
    const t0 = Bun.nanoseconds();
    testRun(obj.program("stm_port_out").fd, { data: seg, ctx, repeat: REPEAT });
    return (Bun.nanoseconds() - t0) / REPEAT;
  };
  return {
    name: "lb/port-out-with-vip",
    unit: "ns/packet",
    setup() {
      on = make(true);
      off = make(false);
    },
    teardown() {
      on?.close();
      off?.close();
    },
    candidate: {
      label: "stm_port_out, a TCP segment between endpoints, one VIP on the node",
      measure: () => ns(on as BpfObject),
    },
    baseline: { label: "the same, no VIP", measure: () => ns(off as BpfObject) },
  };
}

function backends(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    address: `10.${100 + (i >> 8)}.${i & 0xff}.10`,
    port: 8080,
    weight: 1,
    up: true,
  }));
}

function rebuildBench(): Benchmark {
  let obj: BpfObject | undefined;
  let lb: LbTables | undefined;
  let floor: BpfMap | undefined;
  let flip = false;
  const all = backends(1000);
  const keys = new Uint32Array(65537).map((_, i) => i);
  const values = new Uint32Array(65537).map((_, i) => (i % 1000) + 1);
  return {
    name: "lb/rebuild-1000",
    unit: "ms",
    setup() {
      obj = loadObject("port");
      lb = new LbTables({ map: (n) => obj?.map(n) as BpfMap });
      floor = BpfMap.create(BPF_MAP_TYPE.ARRAY, "stm_bench_ring", 4, 4, 65537);
      const t0 = Bun.nanoseconds();
      buildMaglev(
        all.map((b) => ({ key: `${b.address}|${b.port}`, weight: 1, id: b.id })),
        65537,
      );
      process.stderr.write(
        `lb: buildMaglev of 1,000 backends, 65,537 slots: ${((Bun.nanoseconds() - t0) / 1e6).toFixed(2)} ms\n`,
      );
    },
    teardown() {
      floor?.close();
      obj?.close();
    },
    candidate: {
      label: "LbTables.apply: 1,000 backends, one gone (table built, new map filled, swapped in)",
      measure: () => {
        flip = !flip;
        const set = all.map((b, i) => ({ ...b, up: !(flip && i === 500) }));
        const t0 = Bun.nanoseconds();
        const r = (lb as LbTables).apply([
          withTable({ id: 1, address: VIP, port: 80, proto: "tcp", size: 65537, backends: set }),
        ]);
        if (r.tables !== 1) throw new Error("the table was not rebuilt");
        return (Bun.nanoseconds() - t0) / 1e6;
      },
    },
    baseline: {
      label: "one batch write of 65,537 entries into an array map",
      measure: () => {
        const t0 = Bun.nanoseconds();
        (floor as BpfMap).updateBatch(new Uint8Array(keys.buffer), new Uint8Array(values.buffer));
        return (Bun.nanoseconds() - t0) / 1e6;
      },
    },
  };
}

function remapBench(): Benchmark {
  const all = backends(1000).map((b) => ({ key: `${b.address}|${b.port}`, weight: 1, id: b.id }));
  let i = 0;
  return {
    name: "lb/remap-1-of-1000",
    unit: "% of new flows",
    candidate: {
      label: "Maglev, 65,537 slots: slots whose backend changes when one of 1,000 goes",
      measure: () => {
        const gone = (i++ * 97) % 1000;
        return (
          100 *
          remapShare(
            buildMaglev(all, 65537),
            buildMaglev(
              all.filter((_, j) => j !== gone),
              65537,
            ),
          )
        );
      },
    },
    baseline: { label: "the ideal: the gone backend's share, 1/1,000", measure: () => 0.1 },
  };
}

export const LB_BENCHMARKS: Record<string, () => Benchmark> = {
  "lb/xdp-vs-xdp-tx": () =>
    xdpBench("lb/xdp-vs-xdp-tx", "stm_xdp_lb", "stm_xdp_lb, an established flow (the whole work)"),
  "lb/uplink-vs-xdp-tx": () =>
    xdpBench("lb/uplink-vs-xdp-tx", "stm_uplink_in", "stm_uplink_in with the load balancer, same packet"),
  "lb/dsr-vs-xdp-tx": () =>
    xdpBench("lb/dsr-vs-xdp-tx", "stm_xdp_lb", "stm_xdp_lb, an established flow of a DSR VIP (MAC only)", true),
  "lb/vs-nft-dnat": nftDnatBench,
  "lb/port-out-with-vip": portOutBench,
  "lb/rebuild-1000": rebuildBench,
  "lb/remap-1-of-1000": remapBench,
};
