/** DNS wire format: dns-packet as the codec (wrapped so that any failure is a DnsFormatError)
 * and a hand-written, bounded reader for the hot path: the header, the question and the
 * EDNS OPT of a query, and the record offsets of an upstream reply. The readers throw only
 * DnsFormatError, whatever the bytes; compression pointers must point strictly backwards,
 * so a loop cannot exist. Pure. */
import * as dnsPacket from "dns-packet";

export class DnsFormatError extends Error {
  override readonly name = "DnsFormatError";
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Extended rcode 16 (carried as 1 in the OPT's high bits): the EDNS version is not ours. */
export const BADVERS = 16;
export const RCODE_NAMES: Record<number, string> = {
  0: "NOERROR",
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  16: "BADVERS",
};

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, AD: 0x0020, CD: 0x0010 } as const;

/** The UDP payload size we advertise and the most we send over UDP (DNS flag day 2020: no
 * fragmentation on any path). */
export const EDNS_UDP_SIZE = 1232;
/** Without EDNS a UDP answer is at most 512 bytes (RFC 1035). */
export const PLAIN_UDP_SIZE = 512;
const MAX_NAME_WIRE = 255;
/** More jumps than a 255-byte name has labels cannot be honest. */
const MAX_JUMPS = 127;

/** dns-packet's decode, throwing only DnsFormatError (it throws RangeError and friends on
 * short input, and reads past the end of a record silently: the end check catches that). */
export function decodeMessage(buf: Uint8Array): dnsPacket.DecodedPacket {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let p: dnsPacket.DecodedPacket;
  try {
    p = dnsPacket.decode(b);
  } catch (e) {
    throw new DnsFormatError(`malformed DNS message: ${(e as Error)?.message ?? String(e)}`);
  }
  if (dnsPacket.decode.bytes > b.length) throw new DnsFormatError("malformed DNS message: a record runs past the end");
  // RFC 6891 §6.1.1: more than one OPT is a format error, whatever a lenient decoder says.
  if ((p.additionals ?? []).filter((a) => a.type === "OPT").length > 1)
    throw new DnsFormatError("malformed DNS message: more than one OPT record");
  return p;
}

/** dns-packet's encode. A failure here is our bug (we build every message), not the peer's. */
export function encodeMessage(p: dnsPacket.Packet): Buffer {
  return dnsPacket.encode(p);
}

export interface NameRead {
  /** Presentation form, ASCII lower-cased, no trailing dot ("." for the root); bytes that
   * are not printable, '.' and '\' are written \DDD, so distinct wire names stay distinct. */
  name: string;
  /** Offset just after the name where it started (after the pointer if it jumped). */
  end: number;
}

/** Where readName writes a name's presentation form before it becomes a string: at most 255
 * wire bytes, each at most 4 characters (\DDD). One buffer for all calls (they never nest). */
const NAME_SCRATCH = Buffer.alloc(1024);

/** Reads a (possibly compressed) name at `off`. */
export function readName(buf: Uint8Array, off: number, allowPointers = true): NameRead {
  const out = NAME_SCRATCH;
  let n = 0;
  let pos = off;
  let segStart = off;
  let end = -1;
  let wire = 1;
  let jumps = 0;
  for (;;) {
    if (pos >= buf.length) throw new DnsFormatError("name runs past the end of the message");
    const len = buf[pos] as number;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (!allowPointers) throw new DnsFormatError("compression pointer in the question");
      if (pos + 1 >= buf.length) throw new DnsFormatError("name runs past the end of the message");
      const ptr = ((len & 0x3f) << 8) | (buf[pos + 1] as number);
      if (end < 0) end = pos + 2;
      if (ptr >= segStart) throw new DnsFormatError("compression pointer does not point backwards");
      if (++jumps > MAX_JUMPS) throw new DnsFormatError("too many compression pointers");
      pos = ptr;
      segStart = ptr;
      continue;
    }
    if (kind !== 0) throw new DnsFormatError(`unknown label type 0x${kind.toString(16)}`);
    wire += len + 1;
    if (wire > MAX_NAME_WIRE) throw new DnsFormatError("name longer than 255 bytes");
    if (pos + 1 + len > buf.length) throw new DnsFormatError("label runs past the end of the message");
    if (n) out[n++] = 46;
    for (let i = pos + 1; i <= pos + len; i++) {
      let c = buf[i] as number;
      if (c >= 65 && c <= 90) c += 32;
      if (c <= 32 || c >= 127 || c === 46 || c === 92) {
        out[n] = 92;
        out[n + 1] = 48 + Math.floor(c / 100);
        out[n + 2] = 48 + (Math.floor(c / 10) % 10);
        out[n + 3] = 48 + (c % 10);
        n += 4;
      } else out[n++] = c;
    }
    pos += 1 + len;
  }
  return { name: n ? out.toString("latin1", 0, n) : ".", end };
}

export interface Edns {
  udpSize: number;
  do: boolean;
  version: number;
}

export interface ParsedQuery {
  id: number;
  flags: number;
  qname: string;
  /** Offset after the question name: [12, qnameEnd) are the name's bytes, as the client cased them. */
  qnameEnd: number;
  qtype: number;
  qclass: number;
  /** Offset after the question. */
  questionEnd: number;
  edns?: Edns;
}

const u16 = (b: Uint8Array, o: number): number => ((b[o] as number) << 8) | (b[o + 1] as number);
const u32 = (b: Uint8Array, o: number): number =>
  (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;

export interface Rr {
  section: 1 | 2 | 3;
  start: number;
  type: number;
  klass: number;
  ttl: number;
  /** Offset of the TTL field (to age it in a cached copy). */
  ttlOff: number;
  rdata: number;
  rdlen: number;
  end: number;
}

/** Reads the records after the question: offsets only, rdata is not interpreted. */
function readRecords(buf: Uint8Array, off: number, counts: [number, number, number]): { rrs: Rr[]; end: number } {
  const rrs: Rr[] = [];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const start = off;
      off = readName(buf, off).end;
      if (off + 10 > buf.length) throw new DnsFormatError("record header runs past the end of the message");
      const rdlen = u16(buf, off + 8);
      const rdata = off + 10;
      if (rdata + rdlen > buf.length) throw new DnsFormatError("record data runs past the end of the message");
      rrs.push({
        section: (s + 1) as 1 | 2 | 3,
        start,
        type: u16(buf, off),
        klass: u16(buf, off + 2),
        ttl: u32(buf, off + 4),
        ttlOff: off + 4,
        rdata,
        rdlen,
        end: rdata + rdlen,
      });
      off = rdata + rdlen;
    }
  }
  return { rrs, end: off };
}

function readOpt(buf: Uint8Array, rr: Rr): Edns {
  if (rr.section !== 3) throw new DnsFormatError("OPT record outside the additional section");
  if (buf[rr.start] !== 0) throw new DnsFormatError("OPT record not owned by the root");
  // The options must tile the rdata exactly.
  let o = rr.rdata;
  while (o < rr.end) {
    if (o + 4 > rr.end) throw new DnsFormatError("truncated EDNS option");
    o += 4 + u16(buf, o + 2);
  }
  if (o !== rr.end) throw new DnsFormatError("EDNS option runs past the OPT record");
  return { udpSize: rr.klass, do: (rr.ttl & 0x8000) !== 0, version: (rr.ttl >>> 16) & 0xff };
}

/** Parses a query whose header the caller has checked (length ≥ 12, QDCOUNT 1): the
 * question (no compression there: it is the first name) and the EDNS OPT, if any. */
export function parseQuery(buf: Uint8Array): ParsedQuery {
  if (buf.length < 12) throw new DnsFormatError("header shorter than 12 bytes");
  if (u16(buf, 4) !== 1) throw new DnsFormatError("QDCOUNT is not 1");
  const { name, end } = readName(buf, 12, false);
  if (end + 4 > buf.length) throw new DnsFormatError("question runs past the end of the message");
  const q: ParsedQuery = {
    id: u16(buf, 0),
    flags: u16(buf, 2),
    qname: name,
    qnameEnd: end,
    qtype: u16(buf, end),
    qclass: u16(buf, end + 2),
    questionEnd: end + 4,
  };
  const an = u16(buf, 6);
  const ns = u16(buf, 8);
  const ar = u16(buf, 10);
  if (an + ns + ar === 0) return q;
  const { rrs } = readRecords(buf, q.questionEnd, [an, ns, ar]);
  for (const rr of rrs) {
    if (rr.type !== TYPE.OPT) continue;
    if (q.edns) throw new DnsFormatError("more than one OPT record");
    q.edns = readOpt(buf, rr);
  }
  return q;
}

export interface WalkedMessage {
  id: number;
  flags: number;
  qname: string;
  qtype: number;
  qclass: number;
  questionEnd: number;
  rrs: Rr[];
  /** The OPT record, when there is one. */
  opt?: Rr;
  end: number;
}

/** Reads a one-question message (an upstream reply) down to record offsets. */
export function walkMessage(buf: Uint8Array): WalkedMessage {
  if (buf.length < 12) throw new DnsFormatError("header shorter than 12 bytes");
  if (u16(buf, 4) !== 1) throw new DnsFormatError("QDCOUNT is not 1");
  const { name, end } = readName(buf, 12, false);
  if (end + 4 > buf.length) throw new DnsFormatError("question runs past the end of the message");
  const { rrs, end: last } = readRecords(buf, end + 4, [u16(buf, 6), u16(buf, 8), u16(buf, 10)]);
  let opt: Rr | undefined;
  for (const rr of rrs) {
    if (rr.type !== TYPE.OPT) continue;
    if (opt) throw new DnsFormatError("more than one OPT record");
    readOpt(buf, rr);
    opt = rr;
  }
  return {
    id: u16(buf, 0),
    flags: u16(buf, 2),
    qname: name,
    qtype: u16(buf, end),
    qclass: u16(buf, end + 2),
    questionEnd: end + 4,
    rrs,
    opt,
    end: last,
  };
}

/** A 12-byte header. */
export function header(id: number, flags: number, qd: number, an: number, ns: number, ar: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags & 0xffff, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

/** Our OPT record: root owner, our UDP size, the client's DO bit echoed (RFC 3225). */
export function optRecord(dnssecOk: boolean, extRcode = 0): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(TYPE.OPT, 1);
  b.writeUInt16BE(EDNS_UDP_SIZE, 3);
  b[5] = extRcode;
  b.writeUInt16BE(dnssecOk ? 0x8000 : 0, 7);
  return b;
}

/** The wire form of a presentation name as readName returns it (\DDD escapes understood). */
export function nameToWire(name: string): Buffer {
  if (name === "." || name === "") return Buffer.from([0]);
  const out: number[] = [];
  for (const label of name.split(".")) {
    const bytes: number[] = [];
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      if (c === 92 && i + 3 < label.length && /^\d{3}$/.test(label.slice(i + 1, i + 4))) {
        bytes.push(Number(label.slice(i + 1, i + 4)));
        i += 3;
      } else bytes.push(c & 0xff);
    }
    out.push(bytes.length, ...bytes);
  }
  out.push(0);
  return Buffer.from(out);
}
