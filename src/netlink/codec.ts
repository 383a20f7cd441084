/** Netlink wire format: message headers, type-length-value attributes (nested, padded
 * to 4 bytes), and the fixed family headers of rtnetlink (ifinfomsg, ifaddrmsg, rtmsg,
 * ndmsg). Pure: bytes in, bytes out. Decoders throw only NetlinkDecodeError. */
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../model/ip";
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

/** Attributes of one level, by type (the last of a repeated type wins in `get`; `all` keeps every one). */
export class Attrs {
  readonly all: Array<[type: number, payload: Buffer]> = [];
  readonly #byType = new Map<number, Buffer>();

  constructor(buf: Buffer) {
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off);
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      if (len < NLA_HDRLEN || off + len > buf.length)
        throw new NetlinkDecodeError(`attribute ${type} at ${off} claims ${len} bytes of ${buf.length - off}`);
      const payload = buf.subarray(off + NLA_HDRLEN, off + len);
      this.all.push([type, payload]);
      this.#byType.set(type, payload);
      off += align4(len);
    }
  }

  has(type: number): boolean {
    return this.#byType.has(type);
  }
  get(type: number): Buffer | undefined {
    return this.#byType.get(type);
  }
  #sized(type: number, size: number): Buffer | undefined {
    const b = this.#byType.get(type);
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
    const b = this.#byType.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.toString("utf8", 0, nul < 0 ? b.length : nul);
  }
  nested(type: number): Attrs | undefined {
    const b = this.#byType.get(type);
    return b ? new Attrs(b) : undefined;
  }
}

// ---- rtnetlink family headers -------------------------------------------------------------

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export const IFINFOMSG_LEN = 16;

export function encodeIfInfo(m: Partial<IfInfoMsg>): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}

export function decodeIfInfo(p: Buffer): { hdr: IfInfoMsg; attrs: Attrs } {
  need(p, IFINFOMSG_LEN, "ifinfomsg");
  return {
    hdr: {
      family: p.readUInt8(0),
      type: p.readUInt16LE(2),
      index: p.readInt32LE(4),
      flags: p.readUInt32LE(8),
      change: p.readUInt32LE(12),
    },
    attrs: new Attrs(p.subarray(IFINFOMSG_LEN)),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}
export const IFADDRMSG_LEN = 8;

export function encodeIfAddr(m: IfAddrMsg): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.prefixLen, 1);
  b.writeUInt8(m.flags & 0xff, 2);
  b.writeUInt8(m.scope, 3);
  b.writeUInt32LE(m.index, 4);
  return b;
}

export function decodeIfAddr(p: Buffer): { hdr: IfAddrMsg; attrs: Attrs } {
  need(p, IFADDRMSG_LEN, "ifaddrmsg");
  return {
    hdr: {
      family: p.readUInt8(0),
      prefixLen: p.readUInt8(1),
      flags: p.readUInt8(2),
      scope: p.readUInt8(3),
      index: p.readUInt32LE(4),
    },
    attrs: new Attrs(p.subarray(IFADDRMSG_LEN)),
  };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export const RTMSG_LEN = 12;

export function encodeRt(m: RtMsg): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.dstLen, 1);
  b.writeUInt8(m.srcLen, 2);
  b.writeUInt8(m.tos, 3);
  b.writeUInt8(m.table & 0xff, 4);
  b.writeUInt8(m.protocol, 5);
  b.writeUInt8(m.scope, 6);
  b.writeUInt8(m.type, 7);
  b.writeUInt32LE(m.flags >>> 0, 8);
  return b;
}

export function decodeRt(p: Buffer): { hdr: RtMsg; attrs: Attrs } {
  need(p, RTMSG_LEN, "rtmsg");
  return {
    hdr: {
      family: p.readUInt8(0),
      dstLen: p.readUInt8(1),
      srcLen: p.readUInt8(2),
      tos: p.readUInt8(3),
      table: p.readUInt8(4),
      protocol: p.readUInt8(5),
      scope: p.readUInt8(6),
      type: p.readUInt8(7),
      flags: p.readUInt32LE(8),
    },
    attrs: new Attrs(p.subarray(RTMSG_LEN)),
  };
}

export interface NdMsg {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  type: number;
}
export const NDMSG_LEN = 12;

export function encodeNd(m: NdMsg): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeInt32LE(m.ifindex, 4);
  b.writeUInt16LE(m.state, 8);
  b.writeUInt8(m.flags, 10);
  b.writeUInt8(m.type, 11);
  return b;
}

export function decodeNd(p: Buffer): { hdr: NdMsg; attrs: Attrs } {
  need(p, NDMSG_LEN, "ndmsg");
  return {
    hdr: {
      family: p.readUInt8(0),
      ifindex: p.readInt32LE(4),
      state: p.readUInt16LE(8),
      flags: p.readUInt8(10),
      type: p.readUInt8(11),
    },
    attrs: new Attrs(p.subarray(NDMSG_LEN)),
  };
}

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
