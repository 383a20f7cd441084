/** BGP-4 messages (RFC 4271) with the extensions the gateway's announce-only speaker speaks:
 * capabilities (RFC 5492) for multiprotocol IPv4 + IPv6 unicast (RFC 4760), 4-byte AS numbers
 * (RFC 6793), route refresh (RFC 2918) and graceful restart (RFC 4724). Pure: bytes in,
 * messages out, and back. Whatever a peer sends is checked before it is believed; a message
 * that breaks a rule throws BgpError with the NOTIFICATION code and subcode the RFCs give for
 * it, which the session sends before it resets. */

import { bytesToIp, ipToBytes } from "../../model/ip";

export const MARKER = Buffer.alloc(16, 0xff);
export const HEADER_LEN = 19;
export const MAX_MESSAGE_LEN = 4096;
export const BGP_PORT = 179;
/** RFC 6793: the 2-byte stand-in for an AS number that does not fit. */
export const AS_TRANS = 23456;

export const MSG = { OPEN: 1, UPDATE: 2, NOTIFICATION: 3, KEEPALIVE: 4, ROUTE_REFRESH: 5 } as const;
export const AFI = { IPV4: 1, IPV6: 2 } as const;
export const SAFI_UNICAST = 1;
export const CAP = { MULTIPROTOCOL: 1, ROUTE_REFRESH: 2, GRACEFUL_RESTART: 64, AS4: 65 } as const;
export const ATTR = {
  ORIGIN: 1,
  AS_PATH: 2,
  NEXT_HOP: 3,
  MED: 4,
  LOCAL_PREF: 5,
  MP_REACH: 14,
  MP_UNREACH: 15,
} as const;
const FLAG = { OPTIONAL: 0x80, TRANSITIVE: 0x40, PARTIAL: 0x20, EXTENDED: 0x10 } as const;
export const ORIGIN_IGP = 0;
const AS_SET = 1;
const AS_SEQUENCE = 2;

/** NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes used here. */
export const ERR = {
  HEADER: 1,
  OPEN: 2,
  UPDATE: 3,
  HOLD_TIMER: 4,
  FSM: 5,
  CEASE: 6,
  ROUTE_REFRESH: 7,
} as const;
export const SUB = {
  HEADER_NOT_SYNCHRONIZED: 1,
  HEADER_BAD_LENGTH: 2,
  HEADER_BAD_TYPE: 3,
  OPEN_UNSUPPORTED_VERSION: 1,
  OPEN_BAD_PEER_AS: 2,
  OPEN_BAD_BGP_ID: 3,
  OPEN_UNSUPPORTED_PARAMETER: 4,
  OPEN_UNACCEPTABLE_HOLD_TIME: 6,
  UPDATE_MALFORMED_ATTRIBUTE_LIST: 1,
  UPDATE_UNRECOGNIZED_WELL_KNOWN: 2,
  UPDATE_MISSING_WELL_KNOWN: 3,
  UPDATE_ATTRIBUTE_FLAGS: 4,
  UPDATE_ATTRIBUTE_LENGTH: 5,
  UPDATE_INVALID_ORIGIN: 6,
  UPDATE_INVALID_NEXT_HOP: 8,
  UPDATE_OPTIONAL_ATTRIBUTE: 9,
  UPDATE_INVALID_NETWORK_FIELD: 10,
  UPDATE_MALFORMED_AS_PATH: 11,
  ROUTE_REFRESH_BAD_LENGTH: 1,
  CEASE_ADMIN_SHUTDOWN: 2,
  CEASE_PEER_DECONFIGURED: 3,
  CEASE_ADMIN_RESET: 4,
  CEASE_CONNECTION_REJECTED: 5,
  CEASE_COLLISION: 7,
} as const;

/** A rule a peer's message broke: what the NOTIFICATION carries. */
export class BgpError extends Error {
  constructor(
    readonly code: number,
    readonly subcode: number,
    message: string,
    readonly data: Buffer = Buffer.alloc(0),
  ) {
    super(message);
    this.name = "BgpError";
  }
}

const ERROR_NAMES: Record<number, string> = {
  1: "message header error",
  2: "OPEN message error",
  3: "UPDATE message error",
  4: "hold timer expired",
  5: "finite state machine error",
  6: "cease",
  7: "ROUTE-REFRESH message error",
};

const SUBCODE_NAMES: Record<string, string> = {
  "1/1": "connection not synchronized",
  "1/2": "bad message length",
  "1/3": "bad message type",
  "2/1": "unsupported version number",
  "2/2": "bad peer AS",
  "2/3": "bad BGP identifier",
  "2/4": "unsupported optional parameter",
  "2/6": "unacceptable hold time",
  "2/7": "unsupported capability",
  "3/1": "malformed attribute list",
  "3/2": "unrecognized well-known attribute",
  "3/3": "missing well-known attribute",
  "3/4": "attribute flags error",
  "3/5": "attribute length error",
  "3/6": "invalid ORIGIN attribute",
  "3/8": "invalid NEXT_HOP attribute",
  "3/9": "optional attribute error",
  "3/10": "invalid network field",
  "3/11": "malformed AS_PATH",
  "6/1": "maximum number of prefixes reached",
  "6/2": "administrative shutdown",
  "6/3": "peer de-configured",
  "6/4": "administrative reset",
  "6/5": "connection rejected",
  "6/6": "other configuration change",
  "6/7": "connection collision resolution",
  "6/8": "out of resources",
  "6/9": "hard reset",
};

/** "OPEN message error: bad peer AS (2/2)", for logs and `bgp status`. */
export function describeNotification(code: number, subcode: number): string {
  const sub = SUBCODE_NAMES[`${code}/${subcode}`];
  return `${ERROR_NAMES[code] ?? `error ${code}`}${sub ? `: ${sub}` : ""} (${code}/${subcode})`;
}

// ---- prefixes ---------------------------------------------------------------------------------

export interface Prefix {
  afi: 1 | 2;
  /** The address bytes (4 or 16), bits past the length zero. */
  addr: Buffer;
  len: number;
}

export function prefixToString(p: Prefix): string {
  return `${bytesToIp(p.addr)}/${p.len}`;
}

/** NLRI encoding (RFC 4271 §4.3): length in bits, then only the bytes that hold them. */
function encodePrefixes(ps: readonly Prefix[]): Buffer {
  const parts: Buffer[] = [];
  for (const p of ps) {
    const n = Math.ceil(p.len / 8);
    parts.push(Buffer.from([p.len]), p.addr.subarray(0, n));
  }
  return Buffer.concat(parts);
}

function decodePrefixes(b: Buffer, afi: 1 | 2, what: string): Prefix[] {
  const max = afi === AFI.IPV4 ? 32 : 128;
  const out: Prefix[] = [];
  let o = 0;
  while (o < b.length) {
    const len = b[o] as number;
    const n = Math.ceil(len / 8);
    if (len > max || o + 1 + n > b.length)
      throw new BgpError(
        ERR.UPDATE,
        afi === AFI.IPV4 && what !== "MP" ? SUB.UPDATE_INVALID_NETWORK_FIELD : SUB.UPDATE_OPTIONAL_ATTRIBUTE,
        `${what}: a prefix of /${len} ${len > max ? "is too long" : "runs past the end"}`,
      );
    const addr = Buffer.alloc(afi === AFI.IPV4 ? 4 : 16);
    b.copy(addr, 0, o + 1, o + 1 + n);
    // Bits past the length are ignored (RFC 4271 leaves them undefined): cleared.
    if (len % 8 && n > 0) addr[n - 1] = (addr[n - 1] as number) & (0xff << (8 - (len % 8)));
    out.push({ afi, addr, len });
    o += 1 + n;
  }
  return out;
}

// ---- messages ---------------------------------------------------------------------------------

export interface Capabilities {
  /** AFI/SAFI pairs (multiprotocol). */
  families: Array<{ afi: number; safi: number }>;
  /** The 4-byte AS number, when the speaker supports them. */
  as4?: number;
  routeRefresh: boolean;
  /** Graceful restart: the restart time (s), whether this speaker restarted, and the families
   * whose forwarding state it kept. */
  gracefulRestart?: {
    restarting: boolean;
    time: number;
    families: Array<{ afi: number; safi: number; forwarding: boolean }>;
  };
  /** Codes of capabilities this codec does not interpret (kept for logs). */
  other: number[];
}

export interface OpenMessage {
  type: typeof MSG.OPEN;
  version: number;
  /** The 2-byte field (AS_TRANS when the real AS is in the AS4 capability). */
  myAs: number;
  holdTime: number;
  /** Dotted quad. */
  bgpId: string;
  caps: Capabilities;
}

export interface UpdateMessage {
  type: typeof MSG.UPDATE;
  withdrawn: Prefix[];
  announced: Prefix[];
  /** Path attributes, decoded where this speaker needs them. */
  origin?: number;
  asPath?: number[];
  nextHop?: string;
  /** MP_REACH_NLRI: the family, next hops (global, and link-local for IPv6), prefixes. */
  mpReach?: { afi: number; safi: number; nextHops: string[]; prefixes: Prefix[] };
  mpUnreach?: { afi: number; safi: number; prefixes: Prefix[] };
  /** Attribute type codes seen (with the decoded ones). */
  attrTypes: number[];
}

export interface NotificationMessage {
  type: typeof MSG.NOTIFICATION;
  code: number;
  subcode: number;
  data: Buffer;
}

export interface KeepaliveMessage {
  type: typeof MSG.KEEPALIVE;
}

export interface RouteRefreshMessage {
  type: typeof MSG.ROUTE_REFRESH;
  afi: number;
  safi: number;
}

export type Message = OpenMessage | UpdateMessage | NotificationMessage | KeepaliveMessage | RouteRefreshMessage;

function frame(type: number, body: Buffer): Buffer {
  const len = HEADER_LEN + body.length;
  if (len > MAX_MESSAGE_LEN) throw new Error(`BGP message of ${len} bytes is over ${MAX_MESSAGE_LEN}`);
  const h = Buffer.alloc(HEADER_LEN);
  MARKER.copy(h);
  h.writeUInt16BE(len, 16);
  h[18] = type;
  return Buffer.concat([h, body]);
}

function ipv4Bytes(ip: string): Buffer {
  const b = ipToBytes(ip);
  if (b.length !== 4) throw new Error(`not an IPv4 address: ${ip}`);
  return b;
}

function ipv6Bytes(ip: string): Buffer {
  const b = ipToBytes(ip);
  if (b.length !== 16) throw new Error(`not an IPv6 address: ${ip}`);
  return b;
}

/** An IPv4 or IPv6 prefix from text ("10.1.0.0/24", "fd00::/64"). */
export function parsePrefix(text: string): Prefix {
  const [ip, l] = text.split("/");
  const len = l !== undefined && /^\d{1,3}$/.test(l) ? Number(l) : Number.NaN;
  let addr: Buffer;
  try {
    addr = ipToBytes(ip as string);
  } catch {
    throw new Error(`not a prefix: ${text}`);
  }
  const afi = addr.length === 4 ? AFI.IPV4 : AFI.IPV6;
  if (!Number.isInteger(len) || len < 0 || len > addr.length * 8) throw new Error(`not a prefix: ${text}`);
  for (let bit = len; bit < addr.length * 8; bit++) addr[bit >> 3] = (addr[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  return { afi, addr, len };
}

function capability(code: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([code, value.length]), value]);
}

export function encodeOpen(o: {
  asn: number;
  holdTime: number;
  bgpId: string;
  families: Array<{ afi: number; safi: number }>;
  gracefulRestart?: { restarting: boolean; time: number; forwarding: boolean };
}): Buffer {
  const caps: Buffer[] = [];
  for (const f of o.families) {
    const v = Buffer.alloc(4);
    v.writeUInt16BE(f.afi, 0);
    v[3] = f.safi;
    caps.push(capability(CAP.MULTIPROTOCOL, v));
  }
  caps.push(capability(CAP.ROUTE_REFRESH, Buffer.alloc(0)));
  if (o.gracefulRestart) {
    const gr = o.gracefulRestart;
    const v = Buffer.alloc(2 + 4 * o.families.length);
    v.writeUInt16BE(((gr.restarting ? 0x8 : 0) << 12) | (gr.time & 0xfff), 0);
    o.families.forEach((f, i) => {
      v.writeUInt16BE(f.afi, 2 + 4 * i);
      v[4 + 4 * i] = f.safi;
      v[5 + 4 * i] = gr.forwarding ? 0x80 : 0;
    });
    caps.push(capability(CAP.GRACEFUL_RESTART, v));
  }
  const as4 = Buffer.alloc(4);
  as4.writeUInt32BE(o.asn >>> 0);
  caps.push(capability(CAP.AS4, as4));
  const capsBuf = Buffer.concat(caps);
  const params = Buffer.concat([Buffer.from([2, capsBuf.length]), capsBuf]);
  const body = Buffer.alloc(10);
  body[0] = 4;
  body.writeUInt16BE(o.asn > 0xffff ? AS_TRANS : o.asn, 1);
  body.writeUInt16BE(o.holdTime, 3);
  ipv4Bytes(o.bgpId).copy(body, 5);
  body[9] = params.length;
  return frame(MSG.OPEN, Buffer.concat([body, params]));
}

export function encodeKeepalive(): Buffer {
  return frame(MSG.KEEPALIVE, Buffer.alloc(0));
}

export function encodeNotification(code: number, subcode: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return frame(MSG.NOTIFICATION, Buffer.concat([Buffer.from([code, subcode]), data.subarray(0, MAX_MESSAGE_LEN - 21)]));
}

function attribute(flags: number, type: number, value: Buffer): Buffer {
  if (value.length > 255) {
    const h = Buffer.from([flags | FLAG.EXTENDED, type, 0, 0]);
    h.writeUInt16BE(value.length, 2);
    return Buffer.concat([h, value]);
  }
  return Buffer.concat([Buffer.from([flags, type, value.length]), value]);
}

/** The most prefixes of one family that fit one UPDATE next to its attributes. */
export const PREFIXES_PER_UPDATE = { 1: 800, 2: 200 } as const;

/** Announces `prefixes` (one family) from `asn` with next hop `nextHop` (an IPv6 announce may add
 * the link-local next hop). IPv4 goes in the classic NLRI field, IPv6 in MP_REACH_NLRI. */
export function encodeAnnounce(o: {
  asn: number;
  prefixes: readonly Prefix[];
  nextHop: string;
  nextHopLocal?: string;
  /** The AS repeated this many more times (a worse path). */
  prepend?: number;
}): Buffer {
  const afi = o.prefixes[0]?.afi ?? AFI.IPV4;
  if (o.prefixes.some((p) => p.afi !== afi)) throw new Error("one UPDATE carries one address family");
  const n = 1 + (o.prepend ?? 0);
  const asPath = Buffer.alloc(2 + 4 * n);
  asPath[0] = AS_SEQUENCE;
  asPath[1] = n;
  for (let i = 0; i < n; i++) asPath.writeUInt32BE(o.asn >>> 0, 2 + 4 * i);
  const attrs = [
    attribute(FLAG.TRANSITIVE, ATTR.ORIGIN, Buffer.from([ORIGIN_IGP])),
    attribute(FLAG.TRANSITIVE, ATTR.AS_PATH, asPath),
  ];
  let nlri: Buffer = Buffer.alloc(0);
  if (afi === AFI.IPV4) {
    attrs.push(attribute(FLAG.TRANSITIVE, ATTR.NEXT_HOP, ipv4Bytes(o.nextHop)));
    nlri = encodePrefixes(o.prefixes);
  } else {
    const nh = o.nextHopLocal ? Buffer.concat([ipv6Bytes(o.nextHop), ipv6Bytes(o.nextHopLocal)]) : ipv6Bytes(o.nextHop);
    const head = Buffer.alloc(4);
    head.writeUInt16BE(AFI.IPV6, 0);
    head[2] = SAFI_UNICAST;
    head[3] = nh.length;
    attrs.push(
      attribute(FLAG.OPTIONAL, ATTR.MP_REACH, Buffer.concat([head, nh, Buffer.from([0]), encodePrefixes(o.prefixes)])),
    );
  }
  const a = Buffer.concat(attrs);
  const body = Buffer.alloc(4);
  body.writeUInt16BE(0, 0);
  body.writeUInt16BE(a.length, 2);
  return frame(MSG.UPDATE, Buffer.concat([body, a, nlri]));
}

/** Withdraws `prefixes` (one family); with none, the End-of-RIB marker of that family (RFC 4724). */
export function encodeWithdraw(afi: 1 | 2, prefixes: readonly Prefix[]): Buffer {
  if (afi === AFI.IPV4) {
    const w = encodePrefixes(prefixes);
    const body = Buffer.alloc(4 + w.length);
    body.writeUInt16BE(w.length, 0);
    w.copy(body, 2);
    body.writeUInt16BE(0, 2 + w.length);
    return frame(MSG.UPDATE, body);
  }
  const v = Buffer.concat([Buffer.from([0, AFI.IPV6, SAFI_UNICAST]), encodePrefixes(prefixes)]);
  const a = attribute(FLAG.OPTIONAL, ATTR.MP_UNREACH, v);
  const body = Buffer.alloc(4);
  body.writeUInt16BE(a.length, 2);
  return frame(MSG.UPDATE, Buffer.concat([body, a]));
}

export const encodeEndOfRib = (afi: 1 | 2): Buffer => encodeWithdraw(afi, []);

/** True for an UPDATE that is only an End-of-RIB marker. */
export function isEndOfRib(m: UpdateMessage): boolean {
  if (m.announced.length || m.withdrawn.length || m.mpReach) return false;
  if (m.attrTypes.length === 0) return true;
  return m.attrTypes.length === 1 && m.mpUnreach !== undefined && m.mpUnreach.prefixes.length === 0;
}

// ---- decoding ---------------------------------------------------------------------------------

/** Splits a byte stream into messages: feed what arrives, take whole messages out. A header that
 * is already wrong (marker, length) throws as soon as its 19 bytes are in. */
export class Framer {
  #buf: Buffer<ArrayBufferLike> = Buffer.alloc(0);

  push(chunk: Uint8Array): Buffer[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : Buffer.from(chunk);
    const out: Buffer[] = [];
    while (this.#buf.length >= HEADER_LEN) {
      const len = checkHeader(this.#buf);
      if (this.#buf.length < len) break;
      out.push(this.#buf.subarray(0, len));
      this.#buf = this.#buf.subarray(len);
    }
    return out;
  }

  get pending(): number {
    return this.#buf.length;
  }
}

/** The message length a header announces, after checking the marker, length and type. */
function checkHeader(b: Buffer): number {
  if (!b.subarray(0, 16).equals(MARKER)) throw new BgpError(ERR.HEADER, SUB.HEADER_NOT_SYNCHRONIZED, "bad marker");
  const len = b.readUInt16BE(16);
  const type = b[18] as number;
  const lenData = b.subarray(16, 18);
  if (len < HEADER_LEN || len > MAX_MESSAGE_LEN)
    throw new BgpError(ERR.HEADER, SUB.HEADER_BAD_LENGTH, `message length ${len}`, Buffer.from(lenData));
  if (type < MSG.OPEN || type > MSG.ROUTE_REFRESH)
    throw new BgpError(ERR.HEADER, SUB.HEADER_BAD_TYPE, `message type ${type}`, Buffer.from([type]));
  const min = { 1: 29, 2: 23, 3: 21, 4: 19, 5: 23 }[type] as number;
  if (len < min || (type === MSG.KEEPALIVE && len !== 19) || (type === MSG.ROUTE_REFRESH && len !== 23))
    throw new BgpError(ERR.HEADER, SUB.HEADER_BAD_LENGTH, `type ${type} message of ${len} bytes`, Buffer.from(lenData));
  return len;
}

/** One whole message (header included), checked. `as4`: whether both sides negotiated 4-byte AS
 * numbers (AS_PATH then carries 4-byte numbers). */
export function decodeMessage(b: Buffer, o: { as4: boolean } = { as4: true }): Message {
  if (b.length < HEADER_LEN) throw new BgpError(ERR.HEADER, SUB.HEADER_BAD_LENGTH, `${b.length} bytes`);
  const len = checkHeader(b);
  if (len !== b.length) throw new BgpError(ERR.HEADER, SUB.HEADER_BAD_LENGTH, `header says ${len}, got ${b.length}`);
  const body = b.subarray(HEADER_LEN);
  switch (b[18]) {
    case MSG.OPEN:
      return decodeOpen(body);
    case MSG.UPDATE:
      return decodeUpdate(body, o.as4);
    case MSG.NOTIFICATION:
      return {
        type: MSG.NOTIFICATION,
        code: body[0] as number,
        subcode: body[1] as number,
        data: Buffer.from(body.subarray(2)),
      };
    case MSG.KEEPALIVE:
      return { type: MSG.KEEPALIVE };
    default:
      return { type: MSG.ROUTE_REFRESH, afi: body.readUInt16BE(0), safi: body[3] as number };
  }
}

function decodeOpen(b: Buffer): OpenMessage {
  const version = b[0] as number;
  if (version !== 4)
    throw new BgpError(ERR.OPEN, SUB.OPEN_UNSUPPORTED_VERSION, `BGP version ${version}`, Buffer.from([0, 4]));
  const myAs = b.readUInt16BE(1);
  const holdTime = b.readUInt16BE(3);
  if (holdTime === 1 || holdTime === 2)
    throw new BgpError(ERR.OPEN, SUB.OPEN_UNACCEPTABLE_HOLD_TIME, `hold time ${holdTime} s`);
  const id = b.subarray(5, 9);
  const bgpId = [...id].join(".");
  if (id.readUInt32BE(0) === 0) throw new BgpError(ERR.OPEN, SUB.OPEN_BAD_BGP_ID, "BGP identifier 0.0.0.0");
  const plen = b[9] as number;
  if (10 + plen !== b.length)
    throw new BgpError(ERR.OPEN, 0, `optional parameters of ${plen} bytes in ${b.length - 10}`);
  const caps: Capabilities = { families: [], routeRefresh: false, other: [] };
  let o = 10;
  while (o < b.length) {
    if (o + 2 > b.length) throw new BgpError(ERR.OPEN, 0, "a truncated optional parameter");
    const ptype = b[o] as number;
    const pl = b[o + 1] as number;
    if (o + 2 + pl > b.length) throw new BgpError(ERR.OPEN, 0, "an optional parameter runs past the end");
    if (ptype !== 2) throw new BgpError(ERR.OPEN, SUB.OPEN_UNSUPPORTED_PARAMETER, `optional parameter type ${ptype}`);
    decodeCapabilities(b.subarray(o + 2, o + 2 + pl), caps);
    o += 2 + pl;
  }
  if (caps.as4 !== undefined && caps.as4 === 0) throw new BgpError(ERR.OPEN, SUB.OPEN_BAD_PEER_AS, "4-byte AS 0");
  return { type: MSG.OPEN, version, myAs, holdTime, bgpId, caps };
}

function decodeCapabilities(b: Buffer, caps: Capabilities): void {
  let o = 0;
  while (o < b.length) {
    if (o + 2 > b.length) throw new BgpError(ERR.OPEN, 0, "a truncated capability");
    const code = b[o] as number;
    const l = b[o + 1] as number;
    if (o + 2 + l > b.length) throw new BgpError(ERR.OPEN, 0, `capability ${code} runs past the end`);
    const v = b.subarray(o + 2, o + 2 + l);
    switch (code) {
      case CAP.MULTIPROTOCOL:
        if (l !== 4) throw new BgpError(ERR.OPEN, 0, `multiprotocol capability of ${l} bytes`);
        caps.families.push({ afi: v.readUInt16BE(0), safi: v[3] as number });
        break;
      case CAP.AS4:
        if (l !== 4) throw new BgpError(ERR.OPEN, 0, `4-byte AS capability of ${l} bytes`);
        caps.as4 = v.readUInt32BE(0);
        break;
      case CAP.ROUTE_REFRESH:
        caps.routeRefresh = true;
        break;
      case CAP.GRACEFUL_RESTART: {
        if (l < 2 || (l - 2) % 4) throw new BgpError(ERR.OPEN, 0, `graceful restart capability of ${l} bytes`);
        const w = v.readUInt16BE(0);
        const families = [];
        for (let i = 2; i < l; i += 4)
          families.push({
            afi: v.readUInt16BE(i),
            safi: v[i + 2] as number,
            forwarding: ((v[i + 3] as number) & 0x80) !== 0,
          });
        caps.gracefulRestart = { restarting: (w & 0x8000) !== 0, time: w & 0xfff, families };
        break;
      }
      default:
        caps.other.push(code);
    }
    o += 2 + l;
  }
}

const WELL_KNOWN = new Set<number>([
  ATTR.ORIGIN,
  ATTR.AS_PATH,
  ATTR.NEXT_HOP,
  ATTR.LOCAL_PREF,
  6 /* ATOMIC_AGGREGATE */,
]);

function decodeUpdate(b: Buffer, as4: boolean): UpdateMessage {
  if (b.length < 4) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, "UPDATE too short");
  const wl = b.readUInt16BE(0);
  if (2 + wl + 2 > b.length)
    throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, `withdrawn routes of ${wl} bytes`);
  const withdrawn = decodePrefixes(b.subarray(2, 2 + wl), AFI.IPV4, "withdrawn routes");
  const al = b.readUInt16BE(2 + wl);
  const aStart = 4 + wl;
  if (aStart + al > b.length)
    throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, `path attributes of ${al} bytes`);
  const m: UpdateMessage = { type: MSG.UPDATE, withdrawn, announced: [], attrTypes: [] };
  const seen = new Set<number>();
  let o = aStart;
  const end = aStart + al;
  while (o < end) {
    if (o + 3 > end) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, "a truncated attribute");
    const flags = b[o] as number;
    const type = b[o + 1] as number;
    const ext = (flags & FLAG.EXTENDED) !== 0;
    if (ext && o + 4 > end)
      throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, "a truncated attribute");
    const l = ext ? b.readUInt16BE(o + 2) : (b[o + 2] as number);
    const vStart = o + (ext ? 4 : 3);
    const raw = b.subarray(o, vStart + l);
    if (vStart + l > end)
      throw new BgpError(
        ERR.UPDATE,
        SUB.UPDATE_ATTRIBUTE_LENGTH,
        `attribute ${type} runs past the list`,
        Buffer.from(raw),
      );
    if (seen.has(type)) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_ATTRIBUTE_LIST, `attribute ${type} twice`);
    seen.add(type);
    m.attrTypes.push(type);
    const v = b.subarray(vStart, vStart + l);
    const optional = (flags & FLAG.OPTIONAL) !== 0;
    if (WELL_KNOWN.has(type) && (optional || !(flags & FLAG.TRANSITIVE)))
      throw new BgpError(
        ERR.UPDATE,
        SUB.UPDATE_ATTRIBUTE_FLAGS,
        `attribute ${type} flags 0x${flags.toString(16)}`,
        Buffer.from(raw),
      );
    switch (type) {
      case ATTR.ORIGIN:
        if (l !== 1)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_ATTRIBUTE_LENGTH, `ORIGIN of ${l} bytes`, Buffer.from(raw));
        if ((v[0] as number) > 2)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_INVALID_ORIGIN, `ORIGIN ${v[0]}`, Buffer.from(raw));
        m.origin = v[0] as number;
        break;
      case ATTR.AS_PATH:
        m.asPath = decodeAsPath(v, as4);
        break;
      case ATTR.NEXT_HOP:
        if (l !== 4)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_ATTRIBUTE_LENGTH, `NEXT_HOP of ${l} bytes`, Buffer.from(raw));
        m.nextHop = [...v].join(".");
        break;
      case ATTR.MP_REACH: {
        if (!optional)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_ATTRIBUTE_FLAGS, "MP_REACH_NLRI not optional", Buffer.from(raw));
        if (l < 5) throw new BgpError(ERR.UPDATE, SUB.UPDATE_OPTIONAL_ATTRIBUTE, `MP_REACH_NLRI of ${l} bytes`);
        const afi = v.readUInt16BE(0);
        const safi = v[2] as number;
        const nhl = v[3] as number;
        if (4 + nhl + 1 > l)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_OPTIONAL_ATTRIBUTE, "MP_REACH_NLRI next hop runs past it");
        const nh = v.subarray(4, 4 + nhl);
        const nextHops: string[] = [];
        if (afi === AFI.IPV6 && (nhl === 16 || nhl === 32)) {
          for (let i = 0; i < nhl; i += 16) nextHops.push(bytesToIp(nh.subarray(i, i + 16)));
        } else if (afi === AFI.IPV4 && nhl === 4) nextHops.push(bytesToIp(nh));
        else if (afi === AFI.IPV4 || afi === AFI.IPV6)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_OPTIONAL_ATTRIBUTE, `MP_REACH_NLRI next hop of ${nhl} bytes`);
        const nl = v.subarray(4 + nhl + 1);
        const prefixes = afi === AFI.IPV4 || afi === AFI.IPV6 ? decodePrefixes(nl, afi, "MP") : [];
        m.mpReach = { afi, safi, nextHops, prefixes };
        break;
      }
      case ATTR.MP_UNREACH: {
        if (!optional)
          throw new BgpError(ERR.UPDATE, SUB.UPDATE_ATTRIBUTE_FLAGS, "MP_UNREACH_NLRI not optional", Buffer.from(raw));
        if (l < 3) throw new BgpError(ERR.UPDATE, SUB.UPDATE_OPTIONAL_ATTRIBUTE, `MP_UNREACH_NLRI of ${l} bytes`);
        const afi = v.readUInt16BE(0);
        const safi = v[2] as number;
        const prefixes = afi === AFI.IPV4 || afi === AFI.IPV6 ? decodePrefixes(v.subarray(3), afi, "MP") : [];
        m.mpUnreach = { afi, safi, prefixes };
        break;
      }
      default:
        if (!optional && !WELL_KNOWN.has(type))
          throw new BgpError(
            ERR.UPDATE,
            SUB.UPDATE_UNRECOGNIZED_WELL_KNOWN,
            `unrecognized well-known attribute ${type}`,
            Buffer.from(raw),
          );
    }
    o = vStart + l;
  }
  m.announced = decodePrefixes(b.subarray(end), AFI.IPV4, "NLRI");
  if (m.announced.length) {
    // RFC 4271 §6.3: a route needs ORIGIN, AS_PATH and NEXT_HOP.
    for (const [t, name] of [
      [ATTR.ORIGIN, "ORIGIN"],
      [ATTR.AS_PATH, "AS_PATH"],
      [ATTR.NEXT_HOP, "NEXT_HOP"],
    ] as const)
      if (!seen.has(t)) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MISSING_WELL_KNOWN, `no ${name}`, Buffer.from([t]));
  } else if (m.mpReach?.prefixes.length) {
    for (const [t, name] of [
      [ATTR.ORIGIN, "ORIGIN"],
      [ATTR.AS_PATH, "AS_PATH"],
    ] as const)
      if (!seen.has(t)) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MISSING_WELL_KNOWN, `no ${name}`, Buffer.from([t]));
  }
  return m;
}

function decodeAsPath(v: Buffer, as4: boolean): number[] {
  const size = as4 ? 4 : 2;
  const out: number[] = [];
  let o = 0;
  while (o < v.length) {
    if (o + 2 > v.length) throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_AS_PATH, "a truncated AS_PATH segment");
    const st = v[o] as number;
    const n = v[o + 1] as number;
    if ((st !== AS_SET && st !== AS_SEQUENCE && st !== 3 && st !== 4) || n === 0)
      throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_AS_PATH, `AS_PATH segment type ${st} of ${n}`);
    if (o + 2 + n * size > v.length)
      throw new BgpError(ERR.UPDATE, SUB.UPDATE_MALFORMED_AS_PATH, "an AS_PATH segment runs past it");
    for (let i = 0; i < n; i++) out.push(as4 ? v.readUInt32BE(o + 2 + i * 4) : v.readUInt16BE(o + 2 + i * 2));
    o += 2 + n * size;
  }
  return out;
}
