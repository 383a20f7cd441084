/** The firewall's test harness under BPF_PROG_TEST_RUN: a port of the real port object, frames
 * built from packets, runs through the hook of the packet's direction (with the hit counter
 * that moved), and generators of rules and packets for differential tests against the
 * reference evaluator. Shared by the firewall's datapath tests. */
import { dropReasonCode } from "../../src/datapath/drops";
import { encodeDropKey, encodeIfindex, encodePort, type PortConfig } from "../../src/datapath/port-maps";
import type { FwPacket, RuleSpec } from "../../src/model/firewall-rule";
import { formatIp, parseIp } from "../../src/model/ip";
import { type BpfObject, testRun } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { ETH_P, ethernet, IPPROTO, icmp, ipv4, ipv6, tcp, udp } from "./frames";

export const TC_NEXT = -1;
export const TC_DROP = 2;
export const TC_REDIRECT = 7;

export const PORT = 1; // lo: a test run's device must exist
export const PEER = 901; // a port of the same network: frames "from" it reach the firewall of PORT's egress hook
export const NET = 7;
export const MAC = "02:00:00:00:07:05";
export const PEER_MAC = "02:00:00:00:07:06";

let obj: BpfObject;

/** The loaded port object the harness runs (set once the test has loaded it), with the port
 * and its peer configured. */
export function useFwObject(o: BpfObject): void {
  obj = o;
  obj.map("stm_ports").update(encodeIfindex(PORT), encodePort(portCfg("10.0.0.1")));
  obj.map("stm_ports").update(encodeIfindex(PEER), encodePort({ ...portCfg("10.0.0.2"), mac: PEER_MAC }));
}

export function portCfg(ip4: string, ip6?: string): PortConfig {
  return {
    netId: NET,
    ip4,
    mac: MAC,
    cidr4: "0.0.0.0/0",
    gw4: "192.0.2.254",
    ...(ip6 ? { ip6, cidr6: "fd00::/8" } : {}),
  };
}

export function clearState(): void {
  for (const m of ["stm_ct", "stm_frags"] as const) {
    const map = obj.map(m);
    for (const k of [...map.keys()]) map.delete(k);
  }
}

export interface Pkt extends FwPacket {
  /** IPv6 hop limit (default 64). */
  hopLimit?: number;
  tcpFlags?: number;
  icmpId?: number;
  frag?: { id: number; offset: number; more: boolean };
  payload?: number;
}

/** The frame a packet is; its L2 source is the port (egress) or the peer (ingress). */
export function frame(p: Pkt): Buffer {
  const v6 = p.src.includes(":");
  const srcMac = p.dir === "egress" ? MAC : PEER_MAC;
  const dstMac = p.dir === "egress" ? PEER_MAC : MAC;
  const body = Buffer.alloc(p.payload ?? 8);
  let l4: Buffer;
  if (p.proto === IPPROTO.TCP)
    l4 = tcp({ src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, flags: p.tcpFlags ?? 2, seq: 1000 });
  else if (p.proto === IPPROTO.UDP) l4 = udp({ src: p.src, dst: p.dst, sport: p.sport, dport: p.dport }, body);
  else if (p.proto === IPPROTO.ICMP || p.proto === IPPROTO.ICMPV6)
    l4 = icmp({ src: p.src, dst: p.dst, type: p.sport, code: p.dport, id: p.icmpId ?? 77, seq: 1 }, body);
  else l4 = body;
  if (v6)
    return ethernet(
      { src: srcMac, dst: dstMac, type: ETH_P.IPV6 },
      ipv6({ src: p.src, dst: p.dst, next: p.proto, hopLimit: p.hopLimit }, l4),
    );
  return ethernet(
    { src: srcMac, dst: dstMac, type: ETH_P.IP },
    ipv4(
      {
        src: p.src,
        dst: p.dst,
        proto: p.proto,
        ...(p.frag ? { id: p.frag.id, fragOffset: p.frag.offset, moreFragments: p.frag.more } : {}),
      },
      l4,
    ),
  );
}

export function hitsSnapshot(): Map<number, bigint> {
  const m = new Map<number, bigint>();
  const map = obj.map("stm_fw_hits");
  for (const [k, v] of map.entries()) {
    let n = 0n;
    for (const c of map.splitPerCpu(v)) n += c.readBigUInt64LE(0);
    m.set(k.readUInt32LE(0), n);
  }
  return m;
}

export function dropCount(reason: string): bigint {
  const per = obj.map("stm_drops").lookupPerCpu(encodeDropKey(PORT, dropReasonCode(reason)));
  return (per ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
}

/** Runs a packet through the hook of its direction; the port's address follows the packet
 * (port security checks the workload's own source). */
export function run(p: Pkt, raw?: Buffer): { retval: number; hit?: number; out: Buffer } {
  if (p.dir === "egress") {
    const v6 = p.src.includes(":");
    obj
      .map("stm_ports")
      .update(encodeIfindex(PORT), encodePort(portCfg(v6 ? "10.0.0.1" : p.src, v6 ? p.src : undefined)));
  }
  const prog = obj.program(p.dir === "egress" ? "stm_port_in" : "stm_port_out");
  const ctx = alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: p.dir === "egress" ? 0 : PEER });
  const before = hitsSnapshot();
  const r = testRun(prog.fd, { data: raw ?? frame(p), ctx });
  const after = hitsSnapshot();
  const moved = [...after].filter(([k, v]) => v !== (before.get(k) ?? 0n)).map(([k]) => k);
  if (moved.length > 1) throw new Error(`more than one hit counter moved: ${moved}`);
  return { retval: r.retval, hit: moved[0], out: r.dataOut };
}

// ---- generators --------------------------------------------------------------------------

export const V4_BASES = ["10.1.2.3", "10.1.0.0", "10.200.7.9", "192.168.1.77", "172.16.5.4"];
export const V6_BASES = ["fd00:1:2::5", "fd00:1:2:3::9", "fd77::1", "2001:db8:1::42"];
/** Ports the port programs or the failsafe treat specially (DNS, DHCP, VXLAN) are left out. */
export const RESERVED = new Set([53, 67, 68, 546, 547, 4789]);
export const EDGE_PORTS = [0, 1, 2, 79, 80, 81, 443, 1023, 1024, 32768, 65534, 65535];

export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

export function randPort(r: () => number): number {
  for (;;) {
    const p = r() < 0.6 ? pick(r, EDGE_PORTS) : Math.floor(r() * 65536);
    if (!RESERVED.has(p)) return p;
  }
}

export function prefixOf(addr: string, len: number): string {
  const ip = parseIp(addr);
  const bits = ip.family === 4 ? 32 : 128;
  const net = len === 0 ? 0n : (ip.value >> BigInt(bits - len)) << BigInt(bits - len);
  return `${formatIp({ family: ip.family, value: net })}/${len}`;
}

export function genRule(r: () => number, priority: number, fam: 4 | 6 | 0): RuleSpec {
  const proto = pick(
    r,
    fam === 4
      ? (["any", "tcp", "udp", "icmp"] as const)
      : fam === 6
        ? (["any", "tcp", "udp", "icmpv6"] as const)
        : (["any", "tcp", "udp"] as const),
  );
  const spec: RuleSpec = {
    priority,
    direction: pick(r, ["ingress", "egress", "both"] as const),
    proto,
    action: pick(r, ["allow", "deny", "reject"] as const),
  };
  const cidr = () => {
    if (fam === 4) {
      const len = Math.floor(r() * 33);
      if (r() < 0.1) return `::ffff:${prefixOf(pick(r, V4_BASES), len).replace(/\/\d+$/, "")}/${96 + len}`;
      return prefixOf(pick(r, V4_BASES), len);
    }
    return prefixOf(pick(r, V6_BASES), Math.floor(r() * 129));
  };
  if (fam !== 0 && r() < 0.6) spec.src = cidr();
  if (fam !== 0 && r() < 0.6) spec.dst = cidr();
  if (proto === "tcp" || proto === "udp") {
    const range = () => {
      const a = randPort(r);
      const b = r() < 0.5 ? a : randPort(r);
      return `${Math.min(a, b)}-${Math.max(a, b)}`;
    };
    if (r() < 0.5) spec.sport = range();
    if (r() < 0.6) spec.dport = range();
  }
  if ((proto === "icmp" || proto === "icmpv6") && r() < 0.6) {
    const t = pick(r, proto === "icmp" ? [0, 8, 13] : [128, 129, 140]);
    spec["icmp-type"] = r() < 0.5 ? `${t}` : `${t}/${Math.floor(r() * 3)}`;
  }
  return spec;
}

/** An address near a base: on a prefix boundary, one past it, or random low bits. */
export function genAddr(r: () => number, fam: 4 | 6): string {
  const base = parseIp(pick(r, fam === 4 ? V4_BASES : V6_BASES));
  const bits = fam === 4 ? 32 : 128;
  const len = Math.floor(r() * (bits + 1));
  const hostBits = BigInt(bits - len);
  const net = len === 0 ? 0n : (base.value >> hostBits) << hostBits;
  const mode = Math.floor(r() * 4);
  const max = (1n << BigInt(bits)) - 1n;
  let v =
    mode === 0
      ? net
      : mode === 1
        ? net + (1n << hostBits) - 1n
        : mode === 2
          ? net + (1n << hostBits)
          : net | (BigInt(Math.floor(r() * 2 ** 31)) & ((1n << hostBits) - 1n));
  v &= max;
  if (fam === 4 && (v >> 24n === 0n || v >> 28n >= 14n || v === max)) v = base.value; // not 0/8, multicast, broadcast
  if (fam === 6 && v >> 120n === 0xffn) v = base.value; // not multicast
  return formatIp({ family: fam, value: v });
}

export function genPacket(r: () => number, fam: 4 | 6): Pkt {
  let src = genAddr(r, fam);
  let dst = genAddr(r, fam);
  if (fam === 6 && r() < 0.15) {
    // IPv4-mapped addresses on an IPv6 packet count as IPv4 to the rules.
    src = `::ffff:${genAddr(r, 4)}`;
    if (r() < 0.7) dst = `::ffff:${genAddr(r, 4)}`;
  }
  const dir = r() < 0.5 ? "egress" : "ingress";
  const kind = Math.floor(r() * 10);
  if (kind < 4) return { dir, src, dst, proto: IPPROTO.TCP, sport: randPort(r), dport: randPort(r), tcpFlags: 2 };
  if (kind < 7) return { dir, src, dst, proto: IPPROTO.UDP, sport: randPort(r), dport: randPort(r) };
  if (kind < 9) {
    const types = fam === 4 ? [0, 8, 13] : [128, 129, 140];
    return {
      dir,
      src,
      dst,
      proto: fam === 4 ? IPPROTO.ICMP : IPPROTO.ICMPV6,
      sport: pick(r, types),
      dport: Math.floor(r() * 3),
    };
  }
  return { dir, src, dst, proto: 47, sport: 0, dport: 0 }; // GRE: an "other" protocol
}

export function expectedRetval(action: string): number {
  if (action === "allow") return TC_NEXT;
  if (action === "deny") return TC_DROP;
  return TC_REDIRECT; // generated packets are never errors, resets or multicast
}
