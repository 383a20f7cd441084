/** Netlink wire format: message headers, type-length-value attributes (nested, padded
 * to 4 bytes), and the fixed family headers of rtnetlink (ifinfomsg, ifaddrmsg, rtmsg,
 * ndmsg). Pure: bytes in, bytes out. Decoders throw only NetlinkDecodeError. */
import { ipToBytes } from "../model/ip";
import { decode, encode, type Field, type Layout } from "../sys/layout";
import { NL } from "./constants";

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
const NLA_TYPE_MASK = 0x3fff; // drops NLA_F_NESTED and NLA_F_NET_BYTEORDER

export const align4 = (n: number): number => (n + 3) & ~3;

export class NetlinkDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetlinkDecodeError";
  }
}

// ---- encoding --------------------------------------------------------------------------------

/** Builds one netlink message: header, family header, then attributes. */
export class MessageBuilder {
  #chunks: Buffer[] = [];
  #len = 0;
  #nests: Array<{ index: number; start: number }> = [];

  constructor(
    readonly type: number,
    readonly flags: number,
    familyHeader: Uint8Array,
  ) {
    this.#push(Buffer.alloc(NLMSG_HDRLEN));
    this.#push(padded(familyHeader));
  }

  #push(b: Buffer): void {
    this.#chunks.push(b);
    this.#len += b.length;
  }

  attr(type: number, payload: Uint8Array): this {
    const hdr = Buffer.alloc(NLA_HDRLEN);
    hdr.writeUInt16LE(NLA_HDRLEN + payload.length, 0);
    hdr.writeUInt16LE(type, 2);
    this.#push(hdr);
    this.#push(padded(payload));
    return this;
  }

  u8(type: number, v: number): this {
    return this.attr(type, Buffer.from([v & 0xff]));
  }
  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.attr(type, b);
  }
  /** Network byte order u16 (ports in VXLAN attributes). */
  u16be(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.attr(type, b);
  }
  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.attr(type, b);
  }
  u64(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return this.attr(type, b);
  }
  /** NUL-terminated string. */
  str(type: number, s: string): this {
    return this.attr(type, Buffer.from(`${s}\0`, "utf8"));
  }
  flag(type: number): this {
    return this.attr(type, Buffer.alloc(0));
  }

  /** Opens a nested attribute; everything added until `end()` goes inside it. */
  begin(type: number): this {
    const hdr = Buffer.alloc(NLA_HDRLEN);
    hdr.writeUInt16LE(type | NL.NLA_F_NESTED, 2);
    this.#nests.push({ index: this.#chunks.length, start: this.#len });
    this.#push(hdr);
    return this;
  }

  /** Raw bytes inside the current nest (e.g. the peer's ifinfomsg of a veth). */
  raw(b: Uint8Array): this {
    this.#push(padded(b));
    return this;
  }

  end(): this {
    const n = this.#nests.pop();
    if (!n) throw new Error("netlink builder: end() without begin()");
    this.#chunks[n.index]?.writeUInt16LE(this.#len - n.start, 0);
    return this;
  }

  nest(type: number, fill: (b: this) => void): this {
    this.begin(type);
    fill(this);
    return this.end();
  }

  finish(seq: number, portId = 0): Buffer {
    if (this.#nests.length) throw new Error("netlink builder: unterminated nested attribute");
    const out = Buffer.concat(this.#chunks, this.#len);
    out.writeUInt32LE(this.#len, 0);
    out.writeUInt16LE(this.type, 4);
    out.writeUInt16LE(this.flags, 6);
    out.writeUInt32LE(seq >>> 0, 8);
    out.writeUInt32LE(portId >>> 0, 12);
    return out;
  }
}

function padded(b: Uint8Array): Buffer {
  const len = align4(b.length);
  if (len === b.length) return Buffer.from(b);
  const out = Buffer.alloc(len);
  out.set(b);
  return out;
}

// ---- decoding -------------------------------------------------------------------------------

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  portId: number;
  /** Everything after the 16-byte header. */
  payload: Buffer;
}

/** Splits a datagram into messages. */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length)
      throw new NetlinkDecodeError(`netlink message at ${off} claims ${len} bytes of ${buf.length - off}`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      portId: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes of one level, by type (the last of a repeated type wins in `get`; `all` keeps every
 * one). The constructor checks every length and notes where each attribute is; a payload is
 * cut out only when asked for (a link dump of thousands has some fifty attributes a link, of
 * which a reader wants a few). */
export class Attrs {
  readonly #buf: Buffer;
  /** Type, payload offset and payload length of each attribute, in order. */
  readonly #at: number[] = [];

  constructor(buf: Buffer) {
    this.#buf = buf;
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off);
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      if (len < NLA_HDRLEN || off + len > buf.length)
        throw new NetlinkDecodeError(`attribute ${type} at ${off} claims ${len} bytes of ${buf.length - off}`);
      this.#at.push(type, off + NLA_HDRLEN, len - NLA_HDRLEN);
      off += align4(len);
    }
  }

  /** Every attribute in order, repeated types included. */
  get all(): Array<[type: number, payload: Buffer]> {
    const out: Array<[number, Buffer]> = [];
    const at = this.#at;
    for (let i = 0; i < at.length; i += 3) {
      const o = at[i + 1] as number;
      out.push([at[i] as number, this.#buf.subarray(o, o + (at[i + 2] as number))]);
    }
    return out;
  }

  /** The position in #at of the last attribute of `type`, or -1. */
  #find(type: number): number {
    const at = this.#at;
    for (let i = at.length - 3; i >= 0; i -= 3) if (at[i] === type) return i;
    return -1;
  }

  has(type: number): boolean {
    return this.#find(type) >= 0;
  }
  get(type: number): Buffer | undefined {
    const i = this.#find(type);
    if (i < 0) return undefined;
    const o = this.#at[i + 1] as number;
    return this.#buf.subarray(o, o + (this.#at[i + 2] as number));
  }
  #sized(type: number, size: number): Buffer | undefined {
    const b = this.get(type);
    if (b && b.length < size) throw new NetlinkDecodeError(`attribute ${type} is ${b.length} bytes, expected ${size}`);
    return b;
  }
  u8(type: number): number | undefined {
    return this.#sized(type, 1)?.readUInt8(0);
  }
  u16(type: number): number | undefined {
    return this.#sized(type, 2)?.readUInt16LE(0);
  }
  u16be(type: number): number | undefined {
    return this.#sized(type, 2)?.readUInt16BE(0);
  }
  u32(type: number): number | undefined {
    return this.#sized(type, 4)?.readUInt32LE(0);
  }
  i32(type: number): number | undefined {
    return this.#sized(type, 4)?.readInt32LE(0);
  }
  str(type: number): string | undefined {
    const b = this.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.toString("utf8", 0, nul < 0 ? b.length : nul);
  }
  nested(type: number): Attrs | undefined {
    const b = this.get(type);
    return b ? new Attrs(b) : undefined;
  }
}

// ---- rtnetlink family headers -------------------------------------------------------------
// One layout each (sys/layout.ts, checked against the kernel headers by the ABI test), and one
// encoder and decoder made of it.

const L = <T extends Layout>(l: T): T => l;

export const IFINFOMSG = L({
  ctype: "struct ifinfomsg",
  header: "linux/rtnetlink.h",
  size: 16,
  fields: {
    family: [0, "u8", "ifi_family"],
    type: [2, "u16", "ifi_type"],
    index: [4, "i32", "ifi_index"],
    flags: [8, "u32", "ifi_flags"],
    change: [12, "u32", "ifi_change"],
  },
});
export const IFADDRMSG = L({
  ctype: "struct ifaddrmsg",
  header: "linux/rtnetlink.h",
  size: 8,
  fields: {
    family: [0, "u8", "ifa_family"],
    prefixLen: [1, "u8", "ifa_prefixlen"],
    flags: [2, "u8", "ifa_flags"],
    scope: [3, "u8", "ifa_scope"],
    index: [4, "u32", "ifa_index"],
  },
});
export const RTMSG = L({
  ctype: "struct rtmsg",
  header: "linux/rtnetlink.h",
  size: 12,
  fields: {
    family: [0, "u8", "rtm_family"],
    dstLen: [1, "u8", "rtm_dst_len"],
    srcLen: [2, "u8", "rtm_src_len"],
    tos: [3, "u8", "rtm_tos"],
    table: [4, "u8", "rtm_table"],
    protocol: [5, "u8", "rtm_protocol"],
    scope: [6, "u8", "rtm_scope"],
    type: [7, "u8", "rtm_type"],
    flags: [8, "u32", "rtm_flags"],
  },
});
export const NDMSG = L({
  ctype: "struct ndmsg",
  header: "linux/neighbour.h",
  size: 12,
  fields: {
    family: [0, "u8", "ndm_family"],
    ifindex: [4, "i32", "ndm_ifindex"],
    state: [8, "u16", "ndm_state"],
    flags: [10, "u8", "ndm_flags"],
    type: [11, "u8", "ndm_type"],
  },
});

export const TCMSG = L({
  ctype: "struct tcmsg",
  header: "linux/rtnetlink.h",
  size: 20,
  fields: {
    family: [0, "u8", "tcm_family"],
    ifindex: [4, "i32", "tcm_ifindex"],
    handle: [8, "u32", "tcm_handle"],
    parent: [12, "u32", "tcm_parent"],
    info: [16, "u32", "tcm_info"],
  },
});

export type IfInfoMsg = Record<keyof typeof IFINFOMSG.fields, number>;
export type TcMsg = Record<keyof typeof TCMSG.fields, number>;
export type IfAddrMsg = Record<keyof typeof IFADDRMSG.fields, number>;
export type RtMsg = Record<keyof typeof RTMSG.fields, number>;
export type NdMsg = Record<keyof typeof NDMSG.fields, number>;
export const IFINFOMSG_LEN = IFINFOMSG.size;
export const IFADDRMSG_LEN = IFADDRMSG.size;
export const RTMSG_LEN = RTMSG.size;
export const NDMSG_LEN = NDMSG.size;

/** A family header and the attributes after it. */
function decodeFamily<F extends string>(
  layout: Layout & { fields: Record<F, Field> },
  p: Buffer,
): { hdr: Record<F, number>; attrs: Attrs } {
  need(p, layout.size, layout.ctype.replace("struct ", ""));
  return { hdr: decode<F>(layout, p), attrs: new Attrs(p.subarray(layout.size)) };
}

export const encodeIfInfo = (m: Partial<IfInfoMsg>): Buffer =>
  encode(IFINFOMSG, { ...m, flags: (m.flags ?? 0) >>> 0, change: (m.change ?? 0) >>> 0 });
export const decodeIfInfo = (p: Buffer) => decodeFamily(IFINFOMSG, p);
export const encodeIfAddr = (m: IfAddrMsg): Buffer => encode(IFADDRMSG, { ...m, flags: m.flags & 0xff });
export const decodeIfAddr = (p: Buffer) => decodeFamily(IFADDRMSG, p);
export const encodeRt = (m: RtMsg): Buffer => encode(RTMSG, { ...m, table: m.table & 0xff, flags: m.flags >>> 0 });
export const decodeRt = (p: Buffer) => decodeFamily(RTMSG, p);
export const encodeTc = (m: TcMsg): Buffer =>
  encode(TCMSG, { ...m, handle: m.handle >>> 0, parent: m.parent >>> 0, info: m.info >>> 0 });
export const decodeTc = (p: Buffer) => decodeFamily(TCMSG, p);
export const encodeNd = (m: NdMsg): Buffer => encode(NDMSG, m);
export const decodeNd = (p: Buffer) => decodeFamily(NDMSG, p);

function need(p: Buffer, n: number, what: string): void {
  if (p.length < n) throw new NetlinkDecodeError(`${what} needs ${n} bytes, message has ${p.length}`);
}

/** The error (negative errno, 0 for an ACK) and the kernel's extended-ACK text of an NLMSG_ERROR. */
export function decodeError(m: NlMessage): { error: number; message?: string } {
  need(m.payload, 4, "nlmsgerr");
  const error = m.payload.readInt32LE(0);
  if (!(m.flags & NL.NLM_F_ACK_TLVS)) return { error };
  // TLVs follow the echoed request header, and its payload unless the ack was capped.
  const echoedLen = m.payload.length >= 4 + NLMSG_HDRLEN ? m.payload.readUInt32LE(4) : 0;
  const capped = (m.flags & 0x100) !== 0; // NLM_F_CAPPED
  const tlvOff = 4 + (capped ? NLMSG_HDRLEN : align4(echoedLen));
  if (tlvOff > m.payload.length) return { error };
  const attrs = new Attrs(m.payload.subarray(tlvOff));
  return { error, message: attrs.str(NL.NLMSGERR_ATTR_MSG) };
}

// ---- addresses ------------------------------------------------------------------------------

// The byte codecs of addresses are the model's (pure); netlink speaks them too.
export { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../model/ip";

export function familyOf(ip: string): number {
  return ip.includes(":") ? NL.AF_INET6 : NL.AF_INET;
}

/** "10.0.0.1/24" → address and prefix length; a bare address gets the full length. */
export function parseCidr(cidr: string): { ip: string; prefixLen: number; family: number } {
  const [ip, len] = cidr.split("/");
  const family = familyOf(ip as string);
  const max = family === NL.AF_INET6 ? 128 : 32;
  ipToBytes(ip as string);
  const prefixLen = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max || (len !== undefined && !/^\d+$/.test(len)))
    throw new NetlinkDecodeError(`invalid prefix length in "${cidr}"`);
  return { ip: ip as string, prefixLen, family };
}
