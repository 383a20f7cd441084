/** Builds test and trace packets byte by byte (Ethernet, ARP, IPv4, IPv6, UDP, TCP and
 * ICMP/ICMPv6 with correct lengths and checksums) and reads them back for people (monitor
 * events). Pure; used by fixtures, benchmarks, `trace` and `monitor`. */
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../netlink/codec";

export const ETH_P = { IP: 0x0800, ARP: 0x0806, IPV6: 0x86dd } as const;
export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;
export const TCP_FLAGS = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 } as const;

export function ethernet(o: { src: string; dst: string; type: number }, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(14);
  macToBytes(o.dst).copy(h, 0);
  macToBytes(o.src).copy(h, 6);
  h.writeUInt16BE(o.type, 12);
  return Buffer.concat([h, payload]);
}

/** Internet checksum (RFC 1071) over `parts`. */
export function checksum(...parts: Uint8Array[]): number {
  let sum = 0;
  let odd: number | null = null;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      const b = p[i] as number;
      if (odd === null) odd = b;
      else {
        sum += (odd << 8) | b;
        odd = null;
      }
    }
  }
  if (odd !== null) sum += odd << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface Ipv4Opts {
  src: string;
  dst: string;
  proto: number;
  ttl?: number;
  id?: number;
  /** Fragment offset in bytes (multiple of 8) and more-fragments flag. */
  fragOffset?: number;
  moreFragments?: boolean;
  dontFragment?: boolean;
}

export function ipv4(o: Ipv4Opts, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt8(0x45, 0);
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(o.id ?? 0, 4);
  const frag = ((o.fragOffset ?? 0) >> 3) | (o.moreFragments ? 0x2000 : 0) | (o.dontFragment ? 0x4000 : 0);
  h.writeUInt16BE(frag, 6);
  h.writeUInt8(o.ttl ?? 64, 8);
  h.writeUInt8(o.proto, 9);
  ipToBytes(o.src).copy(h, 12);
  ipToBytes(o.dst).copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

export function ipv6(o: { src: string; dst: string; next: number; hopLimit?: number }, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h.writeUInt8(o.next, 6);
  h.writeUInt8(o.hopLimit ?? 64, 7);
  ipToBytes(o.src).copy(h, 8);
  ipToBytes(o.dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

export function pseudoHeader(src: string, dst: string, proto: number, len: number): Buffer {
  const s = ipToBytes(src);
  const d = ipToBytes(dst);
  if (s.length === 4) {
    const p = Buffer.alloc(12);
    s.copy(p, 0);
    d.copy(p, 4);
    p.writeUInt8(proto, 9);
    p.writeUInt16BE(len, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  s.copy(p, 0);
  d.copy(p, 16);
  p.writeUInt32BE(len, 32);
  p.writeUInt8(proto, 39);
  return p;
}

/** UDP with its checksum over the pseudo-header of `src` → `dst` (v4 or v6). */
export function udp(o: { src: string; dst: string; sport: number; dport: number }, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  const seg = Buffer.concat([h, payload]);
  const c = checksum(pseudoHeader(o.src, o.dst, IPPROTO.UDP, seg.length), seg);
  seg.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return seg;
}

export function tcp(
  o: {
    src: string;
    dst: string;
    sport: number;
    dport: number;
    flags: number;
    seq?: number;
    ack?: number;
    window?: number;
  },
  payload: Uint8Array = new Uint8Array(),
): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE((o.seq ?? 1) >>> 0, 4);
  h.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  h.writeUInt8(5 << 4, 12);
  h.writeUInt8(o.flags, 13);
  h.writeUInt16BE(o.window ?? 65535, 14);
  const seg = Buffer.concat([h, payload]);
  seg.writeUInt16BE(checksum(pseudoHeader(o.src, o.dst, IPPROTO.TCP, seg.length), seg), 16);
  return seg;
}

/** ICMP (v4) or ICMPv6 (when src is IPv6: checksum includes the pseudo-header). */
export function icmp(
  o: { src: string; dst: string; type: number; code?: number; id?: number; seq?: number },
  payload: Uint8Array = new Uint8Array(),
): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(o.type, 0);
  h.writeUInt8(o.code ?? 0, 1);
  h.writeUInt16BE(o.id ?? 0, 4);
  h.writeUInt16BE(o.seq ?? 0, 6);
  const msg = Buffer.concat([h, payload]);
  const v6 = o.src.includes(":");
  const c = v6 ? checksum(pseudoHeader(o.src, o.dst, IPPROTO.ICMPV6, msg.length), msg) : checksum(msg);
  msg.writeUInt16BE(c, 2);
  return msg;
}

export function arp(o: {
  op: "request" | "reply";
  senderMac: string;
  senderIp: string;
  targetMac?: string;
  targetIp: string;
}): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(ETH_P.IP, 2);
  b.writeUInt8(6, 4);
  b.writeUInt8(4, 5);
  b.writeUInt16BE(o.op === "request" ? 1 : 2, 6);
  macToBytes(o.senderMac).copy(b, 8);
  ipToBytes(o.senderIp).copy(b, 14);
  macToBytes(o.targetMac ?? "00:00:00:00:00:00").copy(b, 18);
  ipToBytes(o.targetIp).copy(b, 24);
  return b;
}

/** What a host sends when an address has come to it (a moved endpoint, a VIP taken over): a
 * gratuitous ARP (a request for its own address, broadcast) and an unsolicited neighbour
 * advertisement to all nodes, override flag set, with its MAC as target link-layer option. */
export function announcement(o: { mac: string; ip4?: string; ip6?: string }): Buffer[] {
  const frames: Buffer[] = [];
  if (o.ip4)
    frames.push(
      ethernet(
        { src: o.mac, dst: "ff:ff:ff:ff:ff:ff", type: ETH_P.ARP },
        arp({ op: "request", senderMac: o.mac, senderIp: o.ip4, targetIp: o.ip4 }),
      ),
    );
  if (o.ip6)
    frames.push(
      ethernet({ src: o.mac, dst: "33:33:00:00:00:01", type: ETH_P.IPV6 }, neighborAdvert(o.mac, o.ip6, "ff02::1")),
    );
  return frames;
}

/** An IPv6 packet holding a neighbour advertisement for `target` (override set, solicited
 * clear) with the target link-layer address `mac`, hop limit 255. */
export function neighborAdvert(mac: string, target: string, dst: string, o: { solicited?: boolean } = {}): Buffer {
  const body = Buffer.alloc(24);
  ipToBytes(target).copy(body, 0);
  body[16] = 2; // target link-layer address
  body[17] = 1;
  macToBytes(mac).copy(body, 18);
  const na = icmp({ src: target, dst, type: 136 }, body);
  na.writeUInt32BE(o.solicited ? 0x60000000 : 0x20000000, 4);
  na.writeUInt16BE(0, 2);
  na.writeUInt16BE(checksum(pseudoHeader(target, dst, IPPROTO.ICMPV6, na.length), na), 2);
  return ipv6({ src: target, dst, next: IPPROTO.ICMPV6, hopLimit: 255 }, na);
}

/** A complete Ethernet/IPv4|IPv6/UDP frame: the common case for fixtures and benchmarks. */
export function udpFrame(o: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload?: Uint8Array;
}): Buffer {
  const seg = udp(o, o.payload ?? new Uint8Array(18));
  const v6 = o.src.includes(":");
  const l3 = v6
    ? ipv6({ src: o.src, dst: o.dst, next: IPPROTO.UDP }, seg)
    : ipv4({ src: o.src, dst: o.dst, proto: IPPROTO.UDP }, seg);
  return ethernet({ src: o.srcMac, dst: o.dstMac, type: v6 ? ETH_P.IPV6 : ETH_P.IP }, l3);
}

/** What a frame (or the first bytes of one) says, for people: addresses, protocol, ports or
 * ICMP type/code, TCP flags. Never throws: a field the bytes do not reach is left out. */
export interface FrameSummary {
  srcMac?: string;
  dstMac?: string;
  ethertype?: number;
  vlan?: number;
  family?: 4 | 6;
  src?: string;
  dst?: string;
  proto?: number;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  tcpFlags?: string;
  fragment?: boolean;
  arp?: { op: "request" | "reply" | number; senderMac: string; senderIp: string; targetIp: string };
}

const TCP_FLAG_NAMES: Array<[number, string]> = [
  [2, "SYN"],
  [16, "ACK"],
  [1, "FIN"],
  [4, "RST"],
  [8, "PSH"],
  [32, "URG"],
];

export function tcpFlagNames(f: number): string {
  return TCP_FLAG_NAMES.filter(([b]) => f & b)
    .map(([, n]) => n)
    .join("|");
}

export function decodeFrame(b: Uint8Array): FrameSummary {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const s: FrameSummary = {};
  if (buf.length < 14) return s;
  s.dstMac = bytesToMac(buf.subarray(0, 6));
  s.srcMac = bytesToMac(buf.subarray(6, 12));
  let type = buf.readUInt16BE(12);
  let off = 14;
  if ((type === 0x8100 || type === 0x88a8) && buf.length >= 18) {
    s.vlan = buf.readUInt16BE(14) & 0xfff;
    type = buf.readUInt16BE(16);
    off = 18;
  }
  s.ethertype = type;
  let l4 = -1;
  if (type === ETH_P.ARP && buf.length >= off + 28) {
    const op = buf.readUInt16BE(off + 6);
    s.arp = {
      op: op === 1 ? "request" : op === 2 ? "reply" : op,
      senderMac: bytesToMac(buf.subarray(off + 8, off + 14)),
      senderIp: bytesToIp(buf.subarray(off + 14, off + 18)),
      targetIp: bytesToIp(buf.subarray(off + 24, off + 28)),
    };
    return s;
  }
  if (type === ETH_P.IP && buf.length >= off + 20) {
    s.family = 4;
    s.src = bytesToIp(buf.subarray(off + 12, off + 16));
    s.dst = bytesToIp(buf.subarray(off + 16, off + 20));
    s.proto = buf[off + 9] as number;
    const frag = buf.readUInt16BE(off + 6);
    if (frag & 0x3fff) s.fragment = true;
    if ((frag & 0x1fff) === 0) l4 = off + ((buf[off] as number) & 0xf) * 4;
  } else if (type === ETH_P.IPV6 && buf.length >= off + 40) {
    s.family = 6;
    s.src = bytesToIp(buf.subarray(off + 8, off + 24));
    s.dst = bytesToIp(buf.subarray(off + 24, off + 40));
    let next = buf[off + 6] as number;
    let p = off + 40;
    // Extension headers (hop-by-hop, routing, fragment, destination options), as far as the bytes go.
    for (let i = 0; i < 6 && [0, 43, 44, 60].includes(next) && buf.length >= p + 8; i++) {
      if (next === 44) {
        s.fragment = true;
        if (buf.readUInt16BE(p + 2) & 0xfff8) {
          next = buf[p] as number;
          p = -1;
          break;
        }
      }
      const len = next === 44 ? 8 : ((buf[p + 1] as number) + 1) * 8;
      next = buf[p] as number;
      p += len;
    }
    s.proto = next;
    l4 = p;
  }
  if (l4 < 0) return s;
  if ((s.proto === IPPROTO.TCP || s.proto === IPPROTO.UDP) && buf.length >= l4 + 4) {
    s.sport = buf.readUInt16BE(l4);
    s.dport = buf.readUInt16BE(l4 + 2);
    if (s.proto === IPPROTO.TCP && buf.length >= l4 + 14) s.tcpFlags = tcpFlagNames(buf[l4 + 13] as number);
  } else if ((s.proto === IPPROTO.ICMP || s.proto === IPPROTO.ICMPV6) && buf.length >= l4 + 2) {
    s.icmpType = buf[l4] as number;
    s.icmpCode = buf[l4 + 1] as number;
  }
  return s;
}

const PROTO_NAMES: Record<number, string> = {
  1: "icmp",
  2: "igmp",
  4: "ipip",
  6: "tcp",
  17: "udp",
  41: "ipv6",
  47: "gre",
  50: "esp",
  51: "ah",
  58: "icmpv6",
  132: "sctp",
  136: "udplite",
};

export function protoName(p: number): string {
  return PROTO_NAMES[p] ?? `proto ${p}`;
}

/** A summary for scripts: every key present (null where the frame has none), the protocol by name. */
export function frameView(s: FrameSummary) {
  return {
    srcMac: s.srcMac ?? null,
    dstMac: s.dstMac ?? null,
    ethertype: s.ethertype === undefined ? null : `0x${s.ethertype.toString(16).padStart(4, "0")}`,
    vlan: s.vlan ?? null,
    family: s.family ?? null,
    src: s.src ?? null,
    dst: s.dst ?? null,
    proto: s.proto === undefined ? null : protoName(s.proto),
    sport: s.sport ?? null,
    dport: s.dport ?? null,
    icmpType: s.icmpType ?? null,
    icmpCode: s.icmpCode ?? null,
    tcpFlags: s.tcpFlags ?? null,
    fragment: s.fragment === true,
    arp: s.arp ?? null,
  };
}

/** One line: "10.0.0.2:40000 > 10.0.0.3:80 tcp SYN", "ARP request who-has 10.0.0.9 tell 10.0.0.2". */
export function describeFrame(s: FrameSummary): string {
  if (s.arp) {
    const a = s.arp;
    return a.op === "request"
      ? `arp who-has ${a.targetIp} tell ${a.senderIp} (${a.senderMac})`
      : `arp ${a.op} ${a.senderIp} is-at ${a.senderMac}`;
  }
  if (s.src === undefined) {
    if (s.ethertype === undefined) return "(truncated frame)";
    return `${s.srcMac} > ${s.dstMac} ethertype 0x${s.ethertype.toString(16).padStart(4, "0")}${s.vlan !== undefined ? ` vlan ${s.vlan}` : ""}`;
  }
  const host = (ip: string, port?: number) =>
    port === undefined ? ip : s.family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
  let line = `${host(s.src, s.sport)} > ${host(s.dst as string, s.dport)} ${protoName(s.proto ?? 0)}`;
  if (s.tcpFlags) line += ` ${s.tcpFlags}`;
  if (s.icmpType !== undefined) line += ` type ${s.icmpType} code ${s.icmpCode}`;
  if (s.fragment) line += " fragment";
  return line;
}
