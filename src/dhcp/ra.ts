/** Router Advertisements and Router Solicitations (RFC 4861, RDNSS/DNSSL from RFC 8106): the ICMPv6
 * codec (checksum left zero: the raw socket's kernel fills it in) and the pure builder of the RA a
 * network's gateway sends each of its endpoints. Decoders throw only NdFormatError. */
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../netlink/codec";
import { decodeDnsNames, encodeDnsNames } from "./v6";

export class NdFormatError extends Error {
  override name = "NdFormatError";
}

export const ICMP6 = { ROUTER_SOLICIT: 133, ROUTER_ADVERT: 134 } as const;
export const ND_OPT = { SOURCE_LINKADDR: 1, TARGET_LINKADDR: 2, PREFIX_INFO: 3, MTU: 5, RDNSS: 25, DNSSL: 31 } as const;

export type NdOption =
  | { kind: "sourceLinkAddr"; mac: string }
  | { kind: "targetLinkAddr"; mac: string }
  | {
      kind: "prefixInfo";
      prefix: string;
      prefixLength: number;
      onLink: boolean;
      autonomous: boolean;
      valid: number;
      preferred: number;
    }
  | { kind: "mtu"; mtu: number }
  | { kind: "rdnss"; lifetime: number; servers: string[] }
  | { kind: "dnssl"; lifetime: number; domains: string[] }
  /** `data` is everything after the type and length bytes. */
  | { kind: "unknown"; type: number; data: Buffer };

export interface RouterAdvert {
  curHopLimit: number;
  /** M: addresses are also available from DHCPv6. */
  managed: boolean;
  /** O: other configuration (DNS) is available from DHCPv6. */
  other: boolean;
  /** Seconds; 0 = not a default router. */
  routerLifetime: number;
  reachableTime: number;
  retransTimer: number;
  options: NdOption[];
}

const fail = (m: string): never => {
  throw new NdFormatError(m);
};

// ---- encoding ---------------------------------------------------------------------------------

export function encodeRa(ra: RouterAdvert): Buffer {
  const h = Buffer.alloc(16);
  h[0] = ICMP6.ROUTER_ADVERT;
  h[4] = ra.curHopLimit & 0xff;
  h[5] = (ra.managed ? 0x80 : 0) | (ra.other ? 0x40 : 0);
  h.writeUInt16BE(ra.routerLifetime & 0xffff, 6);
  h.writeUInt32BE(ra.reachableTime >>> 0, 8);
  h.writeUInt32BE(ra.retransTimer >>> 0, 12);
  return Buffer.concat([h, ...ra.options.map(encodeNdOption)]);
}

function ip6(ip: string): Buffer {
  let b: Buffer | undefined;
  try {
    b = ipToBytes(ip);
  } catch {}
  if (b?.length !== 16) return fail(`"${ip}" is not an IPv6 address`);
  return b;
}

function mac6(mac: string): Buffer {
  try {
    return macToBytes(mac);
  } catch {
    return fail(`"${mac}" is not a MAC address`);
  }
}

/** Options are whole multiples of 8 bytes; the length byte counts them. */
function opt(type: number, body: Buffer): Buffer {
  const total = Math.ceil((body.length + 2) / 8) * 8;
  if (total / 8 > 255) fail(`ND option ${type} of ${total} bytes does not fit`);
  const b = Buffer.alloc(total);
  b[0] = type;
  b[1] = total / 8;
  body.copy(b, 2);
  return b;
}

function encodeNdOption(o: NdOption): Buffer {
  switch (o.kind) {
    case "sourceLinkAddr":
      return opt(ND_OPT.SOURCE_LINKADDR, mac6(o.mac));
    case "targetLinkAddr":
      return opt(ND_OPT.TARGET_LINKADDR, mac6(o.mac));
    case "prefixInfo": {
      const b = Buffer.alloc(30);
      b[0] = o.prefixLength;
      b[1] = (o.onLink ? 0x80 : 0) | (o.autonomous ? 0x40 : 0);
      b.writeUInt32BE(o.valid >>> 0, 2);
      b.writeUInt32BE(o.preferred >>> 0, 6);
      ip6(o.prefix).copy(b, 14);
      return opt(ND_OPT.PREFIX_INFO, b);
    }
    case "mtu": {
      const b = Buffer.alloc(6);
      b.writeUInt32BE(o.mtu >>> 0, 2);
      return opt(ND_OPT.MTU, b);
    }
    case "rdnss": {
      if (o.servers.length === 0) fail("RDNSS option without servers");
      const b = Buffer.alloc(6);
      b.writeUInt32BE(o.lifetime >>> 0, 2);
      return opt(ND_OPT.RDNSS, Buffer.concat([b, ...o.servers.map(ip6)]));
    }
    case "dnssl": {
      if (o.domains.length === 0) fail("DNSSL option without domains");
      const b = Buffer.alloc(6);
      b.writeUInt32BE(o.lifetime >>> 0, 2);
      // Zero padding after the last name (RFC 8106 §5.2) comes from opt()'s rounding up.
      return opt(ND_OPT.DNSSL, Buffer.concat([b, encodeDnsNames(o.domains, (m) => new NdFormatError(`DNSSL: ${m}`))]));
    }
    case "unknown":
      if ((o.data.length + 2) % 8 !== 0) fail(`ND option ${o.type}: ${o.data.length + 2} bytes is not a multiple of 8`);
      return opt(o.type, o.data);
  }
}

// ---- decoding ---------------------------------------------------------------------------------

function decodeNdOptions(b: Buffer): NdOption[] {
  const out: NdOption[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 2) fail(`truncated option at offset ${off}`);
    const type = b[off] as number;
    const len = (b[off + 1] as number) * 8;
    // RFC 4861 §6.1: a zero-length option makes the whole message invalid.
    if (len === 0) fail(`option ${type} with length 0`);
    if (off + len > b.length) fail(`option ${type} claims ${len} bytes, ${b.length - off} left`);
    out.push(decodeNdOption(type, b.subarray(off, off + len)));
    off += len;
  }
  return out;
}

function decodeNdOption(type: number, o: Buffer): NdOption {
  const len = o.length;
  switch (type) {
    case ND_OPT.SOURCE_LINKADDR:
    case ND_OPT.TARGET_LINKADDR:
      if (len !== 8) fail(`link-layer address option of ${len} bytes (Ethernet: 8)`);
      return {
        kind: type === ND_OPT.SOURCE_LINKADDR ? "sourceLinkAddr" : "targetLinkAddr",
        mac: bytesToMac(o.subarray(2, 8)),
      };
    case ND_OPT.PREFIX_INFO:
      if (len !== 32) fail(`prefix information option of ${len} bytes (32)`);
      return {
        kind: "prefixInfo",
        prefixLength: o[2] as number,
        onLink: ((o[3] as number) & 0x80) !== 0,
        autonomous: ((o[3] as number) & 0x40) !== 0,
        valid: o.readUInt32BE(4),
        preferred: o.readUInt32BE(8),
        prefix: bytesToIp(o.subarray(16, 32)),
      };
    case ND_OPT.MTU:
      if (len !== 8) fail(`MTU option of ${len} bytes (8)`);
      return { kind: "mtu", mtu: o.readUInt32BE(4) };
    case ND_OPT.RDNSS: {
      if (len < 24 || (len - 8) % 16 !== 0) fail(`RDNSS option of ${len} bytes`);
      const servers: string[] = [];
      for (let i = 8; i < len; i += 16) servers.push(bytesToIp(o.subarray(i, i + 16)));
      return { kind: "rdnss", lifetime: o.readUInt32BE(4), servers };
    }
    case ND_OPT.DNSSL: {
      if (len < 16) fail(`DNSSL option of ${len} bytes`);
      const domains = decodeDnsNames(o.subarray(8), (m) => new NdFormatError(`DNSSL: ${m}`), true);
      if (domains.length === 0) fail("DNSSL option without domains");
      return { kind: "dnssl", lifetime: o.readUInt32BE(4), domains };
    }
    default:
      return { kind: "unknown", type, data: Buffer.from(o.subarray(2)) };
  }
}

export function decodeRa(buf: Uint8Array): RouterAdvert {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 16) fail(`router advertisement of ${b.length} bytes (at least 16)`);
  if (b[0] !== ICMP6.ROUTER_ADVERT || b[1] !== 0)
    fail(`ICMPv6 type ${b[0]} code ${b[1]} is not a router advertisement`);
  return {
    curHopLimit: b[4] as number,
    managed: ((b[5] as number) & 0x80) !== 0,
    other: ((b[5] as number) & 0x40) !== 0,
    routerLifetime: b.readUInt16BE(6),
    reachableTime: b.readUInt32BE(8),
    retransTimer: b.readUInt32BE(12),
    options: decodeNdOptions(b.subarray(16)),
  };
}

export interface RouterSolicit {
  options: NdOption[];
}

/** A router solicitation as RFC 4861 §6.1.1 validates it (the hop limit is not visible here). */
export function decodeRs(buf: Uint8Array): RouterSolicit {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8) fail(`router solicitation of ${b.length} bytes (at least 8)`);
  if (b[0] !== ICMP6.ROUTER_SOLICIT || b[1] !== 0)
    fail(`ICMPv6 type ${b[0]} code ${b[1]} is not a router solicitation`);
  return { options: decodeNdOptions(b.subarray(8)) };
}

export function encodeRs(rs: RouterSolicit): Buffer {
  const h = Buffer.alloc(8);
  h[0] = ICMP6.ROUTER_SOLICIT;
  return Buffer.concat([h, ...rs.options.map(encodeNdOption)]);
}

// ---- the gateway's advertisement ----------------------------------------------------------------

export const RA_DEFAULTS = {
  curHopLimit: 64,
  routerLifetime: 1800,
  prefixValid: 86400,
  prefixPreferred: 14400,
} as const;

export interface RaNetwork {
  cidr6: string;
  gateway6: string;
  mtu: number;
  dnsZone: string;
}

/** The /64 SLAAC works on: the first /64 of the network's IPv6 subnet, which is where every
 * profile address lives (profileIp6), so the kernel's SLAAC derives exactly the profile address. */
export function slaacPrefix(cidr6: string): string {
  const b = ip6(cidr6.split("/")[0] as string);
  b.fill(0, 8);
  return bytesToIp(b);
}

/** The RA a network's gateway sends one of its endpoints: default router, SLAAC prefix, MTU, DNS
 * server and search domain, plus M and O because DHCPv6 hands out the same address and DNS data.
 * `dnsLifetime` must outlast several RA intervals (RFC 8106 §5.1: at least 3 × the interval). */
export function buildRa(o: { network: RaNetwork; routerMac: string; dnsLifetime: number }): RouterAdvert {
  return {
    curHopLimit: RA_DEFAULTS.curHopLimit,
    managed: true,
    other: true,
    routerLifetime: RA_DEFAULTS.routerLifetime,
    reachableTime: 0,
    retransTimer: 0,
    options: [
      { kind: "sourceLinkAddr", mac: o.routerMac },
      { kind: "mtu", mtu: o.network.mtu },
      {
        kind: "prefixInfo",
        prefix: slaacPrefix(o.network.cidr6),
        prefixLength: 64,
        onLink: true,
        autonomous: true,
        valid: RA_DEFAULTS.prefixValid,
        preferred: RA_DEFAULTS.prefixPreferred,
      },
      { kind: "rdnss", lifetime: o.dnsLifetime, servers: [o.network.gateway6] },
      { kind: "dnssl", lifetime: o.dnsLifetime, domains: [o.network.dnsZone] },
    ],
  };
}

/** RDNSS/DNSSL lifetime for a given RA interval: the DNS server is the gateway itself, so it is
 * announced for as long as the router is (1800 s), and never for less than 3 intervals. */
export function dnsLifetime(raIntervalMs: number): number {
  return Math.max(RA_DEFAULTS.routerLifetime, Math.ceil((3 * raIntervalMs * 1.25) / 1000));
}
