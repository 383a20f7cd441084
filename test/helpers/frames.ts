/** Frames for port-security fixtures and attack tests: the ordinary ones from
 * src/datapath/packet.ts plus the odd ones a hostile workload sends (ND with options,
 * IPv6 extension chains, fragments, VLAN tags, broken headers). */
import { expect } from "bun:test";
import {
  arp,
  checksum,
  ETH_P,
  ethernet,
  IPPROTO,
  icmp,
  ipv4,
  ipv6,
  pseudoHeader,
  tcp,
  udp,
} from "../../src/datapath/packet";
import { bytesToIp, ipToBytes, macToBytes } from "../../src/netlink/codec";

export { arp, ETH_P, ethernet, IPPROTO, icmp, ipv4, ipv6, tcp, udp };

export const eth4 = (src: string, dst: string, l3: Uint8Array) => ethernet({ src, dst, type: ETH_P.IP }, l3);
export const eth6 = (src: string, dst: string, l3: Uint8Array) => ethernet({ src, dst, type: ETH_P.IPV6 }, l3);
export const ethArp = (src: string, dst: string, body: Uint8Array) => ethernet({ src, dst, type: ETH_P.ARP }, body);

/** The IP packet of an untagged frame read back (addresses, protocol, L4 bytes and ports), every
 * checksum asserted by recomputing it: the IPv4 header's, and the L4 one but for a later
 * fragment and a UDP/IPv4 datagram sent without one (ICMPv4 has no pseudo-header). */
export function readIp(f: Buffer) {
  const v6 = f.readUInt16BE(12) === 0x86dd;
  const l3 = f.subarray(14);
  const src = bytesToIp(v6 ? l3.subarray(8, 24) : l3.subarray(12, 16));
  const dst = bytesToIp(v6 ? l3.subarray(24, 40) : l3.subarray(16, 20));
  const proto = v6 ? (l3[6] as number) : (l3[9] as number);
  const l4 = l3.subarray(v6 ? 40 : 20);
  if (!v6) expect(checksum(l3.subarray(0, 20))).toBe(0);
  const frag = !v6 && (l3.readUInt16BE(6) & 0x1fff) !== 0;
  const noUdpSum = !v6 && proto === IPPROTO.UDP && l4.readUInt16BE(6) === 0;
  if (!frag && !noUdpSum) {
    if (proto === IPPROTO.ICMP) expect(checksum(l4)).toBe(0);
    else expect(checksum(pseudoHeader(src, dst, proto, l4.length), l4)).toBe(0);
  }
  const payload = l4.subarray(proto === IPPROTO.TCP ? 20 : 8);
  return { src, dst, proto, l4, sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2), payload };
}

export interface L2 {
  mac: string;
  dstMac?: string;
}

/** Ethernet/IPv4/UDP. */
export function udp4(o: L2 & { src: string; dst: string; sport: number; dport: number; payload?: Uint8Array }): Buffer {
  return eth4(
    o.mac,
    o.dstMac ?? "ff:ff:ff:ff:ff:ff",
    ipv4({ src: o.src, dst: o.dst, proto: IPPROTO.UDP }, udp(o, o.payload ?? new Uint8Array(16))),
  );
}

export function tcp4(o: L2 & { src: string; dst: string; sport?: number; dport?: number }): Buffer {
  return eth4(
    o.mac,
    o.dstMac ?? "02:00:00:00:00:fe",
    ipv4(
      { src: o.src, dst: o.dst, proto: IPPROTO.TCP },
      tcp({ src: o.src, dst: o.dst, sport: o.sport ?? 40000, dport: o.dport ?? 80, flags: 2 }),
    ),
  );
}

export function udp6(o: L2 & { src: string; dst: string; sport: number; dport: number; payload?: Uint8Array }): Buffer {
  return eth6(
    o.mac,
    o.dstMac ?? "33:33:00:00:00:01",
    ipv6({ src: o.src, dst: o.dst, next: IPPROTO.UDP }, udp(o, o.payload ?? new Uint8Array(16))),
  );
}

export function tcp6(o: L2 & { src: string; dst: string }): Buffer {
  return eth6(
    o.mac,
    o.dstMac ?? "02:00:00:00:00:fe",
    ipv6(
      { src: o.src, dst: o.dst, next: IPPROTO.TCP },
      tcp({ src: o.src, dst: o.dst, sport: 40000, dport: 80, flags: 2 }),
    ),
  );
}

/** An ND option carrying a link-layer address (1 = source, 2 = target). */
export function lla(type: 1 | 2, mac: string): Buffer {
  return Buffer.concat([Buffer.from([type, 1]), macToBytes(mac)]);
}

/** ICMPv6 message of `type` with `body` after the 4-byte reserved/flags word. */
export function icmp6(
  o: L2 & { src: string; dst: string; type: number; body?: Uint8Array; ext?: Uint8Array; extNext?: number },
): Buffer {
  const msg = icmp({ src: o.src, dst: o.dst, type: o.type }, o.body ?? new Uint8Array(0));
  const payload = o.ext ? Buffer.concat([o.ext, msg]) : msg;
  return eth6(
    o.mac,
    o.dstMac ?? "33:33:00:00:00:01",
    ipv6({ src: o.src, dst: o.dst, next: o.ext ? (o.extNext ?? 0) : IPPROTO.ICMPV6 }, payload),
  );
}

/** NS/NA body: target address then options. */
export function ndBody(target: string, ...opts: Uint8Array[]): Buffer {
  return Buffer.concat([ipToBytes(target), ...opts]);
}

/** A hop-by-hop or destination-options header of 8 bytes (PadN), followed by `next`. */
export function optsHeader(next: number): Buffer {
  return Buffer.from([next, 0, 1, 4, 0, 0, 0, 0]);
}

/** IPv6/UDP behind a chain of `headers` destination-options headers. */
export function udp6Behind(headers: number, o: L2 & { src: string; dst: string }): Buffer {
  const chain = Array.from({ length: headers }, (_, i) => optsHeader(i < headers - 1 ? 60 : IPPROTO.UDP));
  const seg = udp({ src: o.src, dst: o.dst, sport: 1, dport: 9 }, new Uint8Array(8));
  return raw6({ ...o, next: headers ? 60 : IPPROTO.UDP, payload: Buffer.concat([...chain, seg]) });
}

/** HBH with a router alert (MLD), followed by ICMPv6. */
export const hbhRouterAlert = Buffer.from([IPPROTO.ICMPV6, 0, 5, 2, 0, 0, 1, 0]);

/** An IPv6 fragment header: `offset` in bytes (multiple of 8), more-fragments flag. */
export function fragHeader(next: number, offset: number, more: boolean, id = 0x1234): Buffer {
  const b = Buffer.alloc(8);
  b[0] = next;
  b.writeUInt16BE((offset & 0xfff8) | (more ? 1 : 0), 2);
  b.writeUInt32BE(id, 4);
  return b;
}

/** IPv6 with a raw payload already holding any extension headers. */
export function raw6(o: L2 & { src: string; dst: string; next: number; payload: Uint8Array }): Buffer {
  return eth6(o.mac, o.dstMac ?? "02:00:00:00:00:fe", ipv6({ src: o.src, dst: o.dst, next: o.next }, o.payload));
}

/** Rewrites one byte of a frame (broken headers). */
export function patch(frame: Buffer, offset: number, value: number, width: 1 | 2 = 1): Buffer {
  const b = Buffer.from(frame);
  if (width === 1) b.writeUInt8(value, offset);
  else b.writeUInt16BE(value, offset);
  return b;
}

/** An 802.1Q tag inserted after the MAC addresses. */
export function vlanTag(frame: Buffer, vid: number): Buffer {
  const tag = Buffer.alloc(4);
  tag.writeUInt16BE(0x8100, 0);
  tag.writeUInt16BE(vid, 2);
  return Buffer.concat([frame.subarray(0, 12), tag, frame.subarray(12)]);
}

/** A DHCPv4 message body: op, htype, hlen and enough zeroes to look like BOOTP. */
/** A BOOTP/DHCPv4 message: `op` 1 request, 2 reply; `chaddr` the client MAC; `giaddr` a relay. */
export function bootp(op: 1 | 2, o: { chaddr?: string; giaddr?: string; htype?: number } = {}): Buffer {
  const b = Buffer.alloc(240);
  b[0] = op;
  b[1] = o.htype ?? 1;
  b[2] = 6;
  if (o.giaddr) b.set(o.giaddr.split(".").map(Number), 24);
  if (o.chaddr)
    b.set(
      o.chaddr.split(":").map((x) => Number.parseInt(x, 16)),
      28,
    );
  b.writeUInt32BE(0x63825363, 236);
  return b;
}

/** A DHCPv6 message of `type` (1 SOLICIT, 2 ADVERTISE, 7 REPLY …). */
export function dhcp6(type: number): Buffer {
  return Buffer.from([type, 0x12, 0x34, 0x56, 0, 1, 0, 0]);
}
