/** DHCPv4 wire codec (RFC 2131/2132, long options RFC 3396, domain search RFC 3397, classless
 * routes RFC 3442): bytes in, bytes out, no I/O. Everything here throws only Dhcp4FormatError. */

export class Dhcp4FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Dhcp4FormatError";
  }
}

export const DHCP4 = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7, INFORM: 8 } as const;

export const OPT = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  MTU: 26,
  BROADCAST: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MSG_TYPE: 53,
  SERVER_ID: 54,
  PARAM_LIST: 55,
  MESSAGE: 56,
  MAX_SIZE: 57,
  T1: 58,
  T2: 59,
  CLIENT_ID: 61,
  RELAY_AGENT: 82,
  DOMAIN_SEARCH: 119,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

export interface Dhcp4Message {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  /** Dotted quads. */
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** 16 bytes as on the wire. */
  chaddr: Uint8Array;
  /** '' when the field carries overloaded options or is empty; otherwise latin1 text up to the first NUL. */
  sname: string;
  file: string;
  /** Option code → value. Long options (RFC 3396) arrive reassembled and overloaded options (file, then
   * sname) merged in; the overload option (52) itself is framing and never appears here. */
  options: Map<number, Uint8Array>;
}

const FIXED_LEN = 236;
const OPTIONS_OFF = 240;
const MAGIC_COOKIE = 0x63825363;
const SNAME_OFF = 44;
const FILE_OFF = 108;
const SNAME_LEN = 64;
const FILE_LEN = 128;
/** BOOTP relays and old clients drop anything shorter (RFC 1542 §2.1). */
const BOOTP_MIN_LEN = 300;
/** RFC 2132 §9.10: no client may ask for less. */
const MIN_MAX_SIZE = 576;
/** Option 57 counts the IP and UDP headers (RFC 2131 §2 derives 576 from the minimum IP datagram);
 * dnsmasq and ISC dhcpd read it the same way, so staying under it is the safe side. */
const IP_UDP_HEADERS = 28;
const MAX_NAME_WIRE = 255;

const fail = (message: string): never => {
  throw new Dhcp4FormatError(message);
};

// ---- small helpers ---------------------------------------------------------------------------

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Strict dotted quad (no leading zeros: "010" is octal to some parsers) → unsigned 32-bit. */
function ipv4ToU32(s: string, what: string): number {
  if (typeof s !== "string") return fail(`${what}: not a string`);
  let acc = 0;
  let cur = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return fail(`${what}: "${s}" is not a dotted quad`);
      acc = acc * 256 + cur;
      dots++;
      cur = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && cur === 0) return fail(`${what}: "${s}" has a leading zero`);
      cur = cur * 10 + (c - 48);
      digits++;
      if (cur > 255) return fail(`${what}: "${s}" has an octet above 255`);
    } else {
      return fail(`${what}: "${s}" is not a dotted quad`);
    }
  }
  if (digits === 0 || dots !== 3) return fail(`${what}: "${s}" is not a dotted quad`);
  return acc * 256 + cur;
}

const u32ToIp = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

function writeU32(out: Uint8Array, off: number, n: number): void {
  out[off] = n >>> 24;
  out[off + 1] = (n >>> 16) & 255;
  out[off + 2] = (n >>> 8) & 255;
  out[off + 3] = n & 255;
}

const ipAt = (b: Uint8Array, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

function checkUint(n: number, max: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > max) fail(`${what}: ${n} is not an integer in 0..${max}`);
  return n;
}

function checkUint8Array(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(`${what}: not a Uint8Array`);
  return v as Uint8Array;
}

/** NUL-terminated latin1 field; fromCharCode over a subarray is one allocation, not one per byte. */
function latin1z(b: Uint8Array, off: number, len: number): string {
  let end = off;
  const lim = off + len;
  while (end < lim && b[end] !== 0) end++;
  return end === off ? "" : String.fromCharCode.apply(null, b.subarray(off, end) as unknown as number[]);
}

function writeLatin1(out: Uint8Array, off: number, max: number, s: string, what: string): void {
  if (typeof s !== "string") fail(`${what}: not a string`);
  if (s.length > max) fail(`${what}: ${s.length} characters, at most ${max} fit`);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A NUL would end the field early and a char above 0xff cannot be latin1: either loses data.
    if (c === 0 || c > 255) fail(`${what}: character ${c} is not NUL-free latin1`);
    out[off + i] = c;
  }
}

// ---- parsing ---------------------------------------------------------------------------------

/** Per option code, the (start, length) pairs of its instances in wire order: values are cut out
 * once at the end, so many tiny instances of one code cost linear, not quadratic, work. */
type Instances = Map<number, number[]>;

function scanOptions(b: Uint8Array, pos: number, end: number, acc: Instances, inField: string | null): void {
  while (pos < end) {
    const code = b[pos]!;
    if (code === OPT.PAD) {
      pos++;
      continue;
    }
    if (code === OPT.END) return;
    if (pos + 1 >= end) fail(`option ${code} at ${pos} has no length byte`);
    const len = b[pos + 1]!;
    const start = pos + 2;
    if (start + len > end) fail(`option ${code} at ${pos} runs past the end of its area`);
    // Overload inside file/sname could point back at itself; RFC 2131 §4.1 allows it only in options.
    if (inField !== null && code === OPT.OVERLOAD) fail(`overload option inside the ${inField} field`);
    const list = acc.get(code);
    if (list === undefined) acc.set(code, [start, len]);
    else list.push(start, len);
    pos = start + len;
  }
  // Reaching the end without END is tolerated: some clients omit it when the options fill the packet.
}

export function parseDhcp4(buf: Uint8Array): Dhcp4Message {
  if (!(buf instanceof Uint8Array)) fail("packet is not a Uint8Array");
  if (buf.length < OPTIONS_OFF) fail(`packet of ${buf.length} bytes is shorter than ${OPTIONS_OFF}`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(FIXED_LEN) !== MAGIC_COOKIE) fail("magic cookie is not 99.130.83.99");
  const op = buf[0]!;
  if (op !== 1 && op !== 2) fail(`op ${op} is neither BOOTREQUEST nor BOOTREPLY`);
  const hlen = buf[2]!;
  if (hlen > 16) fail(`hlen ${hlen} exceeds the 16-byte chaddr`);

  const acc: Instances = new Map();
  scanOptions(buf, OPTIONS_OFF, buf.length, acc, null);
  let overload = 0;
  const ov = acc.get(OPT.OVERLOAD);
  if (ov !== undefined) {
    if (ov.length !== 2 || ov[1] !== 1) fail("overload option must be exactly one byte");
    overload = buf[ov[0]!]!;
    if (overload < 1 || overload > 3) fail(`overload value ${overload} is not 1, 2 or 3`);
    acc.delete(OPT.OVERLOAD);
    // RFC 2131 §4.1: file first, then sname; RFC 3396 concatenates across areas in that order too.
    if (overload & 1) scanOptions(buf, FILE_OFF, FILE_OFF + FILE_LEN, acc, "file");
    if (overload & 2) scanOptions(buf, SNAME_OFF, SNAME_OFF + SNAME_LEN, acc, "sname");
  }

  const options = new Map<number, Uint8Array>();
  for (const [code, list] of acc) {
    let total = 0;
    for (let i = 1; i < list.length; i += 2) total += list[i]!;
    const value = new Uint8Array(total);
    let at = 0;
    // Byte loops: values are short, and a subarray view per instance costs more than the copy.
    for (let i = 0; i < list.length; i += 2) {
      const start = list[i]!;
      const end = start + list[i + 1]!;
      for (let j = start; j < end; j++) value[at++] = buf[j]!;
    }
    options.set(code, value);
  }

  const chaddr = new Uint8Array(16);
  for (let i = 0; i < 16; i++) chaddr[i] = buf[28 + i]!;
  return {
    op,
    htype: buf[1]!,
    hlen,
    hops: buf[3]!,
    xid: dv.getUint32(4),
    secs: dv.getUint16(8),
    flags: dv.getUint16(10),
    ciaddr: ipAt(buf, 12),
    yiaddr: ipAt(buf, 16),
    siaddr: ipAt(buf, 20),
    giaddr: ipAt(buf, 24),
    chaddr,
    sname: overload & 2 ? "" : latin1z(buf, SNAME_OFF, SNAME_LEN),
    file: overload & 1 ? "" : latin1z(buf, FILE_OFF, FILE_LEN),
    options,
  };
}

// ---- encoding --------------------------------------------------------------------------------

/** Encodes with options in Map order then END; values longer than 255 split into consecutive instances
 * (RFC 3396); padded to at least 300 bytes (BOOTP minimum). `maxSize` is a client's option 57 (values
 * under 576 count as 576); it bounds the whole IP datagram, so the DHCP payload may use maxSize - 28
 * bytes. Exceeding it throws Dhcp4FormatError (the server then drops optional options). Never emits
 * overload: codes 0, 52 and 255 in `options` are refused. */
export function encodeDhcp4(m: Dhcp4Message, maxSize?: number): Uint8Array {
  const op = checkUint(m.op, 255, "op");
  if (op !== 1 && op !== 2) fail(`op ${op} is neither BOOTREQUEST nor BOOTREPLY`);
  const hlen = checkUint(m.hlen, 16, "hlen");
  const chaddr = checkUint8Array(m.chaddr, "chaddr");
  if (chaddr.length > 16) fail(`chaddr of ${chaddr.length} bytes exceeds 16`);
  if (!(m.options instanceof Map)) fail("options: not a Map");

  let optLen = 0;
  for (const [code, value] of m.options) {
    checkUint(code, 255, "option code");
    if (code === OPT.PAD || code === OPT.END || code === OPT.OVERLOAD) fail(`option ${code} cannot carry a value`);
    const n = checkUint8Array(value, `option ${code}`).length;
    optLen += n + 2 * (n === 0 ? 1 : Math.ceil(n / 255));
  }
  const used = OPTIONS_OFF + optLen + 1;
  if (maxSize !== undefined) {
    const mms = Number.isNaN(maxSize) || maxSize < MIN_MAX_SIZE ? MIN_MAX_SIZE : maxSize;
    if (used > mms - IP_UDP_HEADERS) {
      fail(`message of ${used} bytes exceeds the client's maximum of ${mms - IP_UDP_HEADERS} (option 57 = ${mms})`);
    }
  }

  const out = new Uint8Array(Math.max(used, BOOTP_MIN_LEN));
  const dv = new DataView(out.buffer);
  out[0] = op;
  out[1] = checkUint(m.htype, 255, "htype");
  out[2] = hlen;
  out[3] = checkUint(m.hops, 255, "hops");
  dv.setUint32(4, checkUint(m.xid, 0xffffffff, "xid"));
  dv.setUint16(8, checkUint(m.secs, 0xffff, "secs"));
  dv.setUint16(10, checkUint(m.flags, 0xffff, "flags"));
  writeU32(out, 12, ipv4ToU32(m.ciaddr, "ciaddr"));
  writeU32(out, 16, ipv4ToU32(m.yiaddr, "yiaddr"));
  writeU32(out, 20, ipv4ToU32(m.siaddr, "siaddr"));
  writeU32(out, 24, ipv4ToU32(m.giaddr, "giaddr"));
  out.set(chaddr, 28);
  writeLatin1(out, SNAME_OFF, SNAME_LEN, m.sname, "sname");
  writeLatin1(out, FILE_OFF, FILE_LEN, m.file, "file");
  dv.setUint32(FIXED_LEN, MAGIC_COOKIE);

  let pos = OPTIONS_OFF;
  for (const [code, value] of m.options) {
    let at = 0;
    do {
      const n = Math.min(255, value.length - at);
      out[pos] = code;
      out[pos + 1] = n;
      for (let i = 0; i < n; i++) out[pos + 2 + i] = value[at + i]!;
      pos += n + 2;
      at += n;
    } while (at < value.length);
  }
  out[pos] = OPT.END;
  return out;
}

/** "aa:bb:cc:dd:ee:ff" for Ethernet clients; other hardware types have no MAC to key a lease on. */
export function macOf(m: Dhcp4Message): string {
  const c = m.chaddr;
  if (m.htype !== 1 || m.hlen !== 6 || !(c instanceof Uint8Array) || c.length < 6) {
    fail(`htype ${m.htype}/hlen ${m.hlen} is not an Ethernet address`);
  }
  return `${HEX[c[0]!]}:${HEX[c[1]!]}:${HEX[c[2]!]}:${HEX[c[3]!]}:${HEX[c[4]!]}:${HEX[c[5]!]}`;
}

/** Option 53 when well-formed; a malformed type is "no type" so the caller drops the packet. */
export function messageType(m: Dhcp4Message): number | undefined {
  const v = m.options.get(OPT.MSG_TYPE);
  return v !== undefined && v.length === 1 ? v[0] : undefined;
}

// ---- option values: domain names (RFC 1035 label form, RFC 3397) -----------------------------

/** Labels of a search-list name; a trailing dot (FQDN notation) is accepted and dropped. */
function nameLabels(name: string): string[] {
  if (typeof name !== "string") return fail("domain name: not a string");
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  if (trimmed === "") return fail("domain name is empty");
  const labels = trimmed.split(".");
  let wire = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) fail(`domain name "${name}": label length ${l.length} is not 1..63`);
    for (let i = 0; i < l.length; i++) {
      const c = l.charCodeAt(i);
      if (c < 0x21 || c > 0x7e) fail(`domain name "${name}": character ${c} is not printable ASCII`);
    }
    wire += l.length + 1;
  }
  if (wire > MAX_NAME_WIRE) fail(`domain name "${name}" is ${wire} bytes on the wire, at most ${MAX_NAME_WIRE}`);
  return labels;
}

function encodeDomainSearch(names: string[]): Uint8Array {
  if (!Array.isArray(names) || names.length === 0) fail("domain search list is empty");
  const out: number[] = [];
  // Suffix → offset of its first occurrence; case kept exact so decoding returns what was given.
  const seen = new Map<string, number>();
  for (const name of names) {
    const labels = nameLabels(name);
    let i = 0;
    for (; i < labels.length; i++) {
      const suffix = labels.slice(i).join(".");
      const ptr = seen.get(suffix);
      if (ptr !== undefined) {
        out.push(0xc0 | (ptr >> 8), ptr & 0xff);
        break;
      }
      if (out.length <= 0x3fff) seen.set(suffix, out.length);
      const l = labels[i]!;
      out.push(l.length);
      for (let k = 0; k < l.length; k++) out.push(l.charCodeAt(k));
    }
    if (i === labels.length) out.push(0);
  }
  return Uint8Array.from(out);
}

/** Labels and pointer hops per name; a 255-byte name has at most 127 labels, so this only stops
 * pointer chains crafted to make decoding quadratic. */
const MAX_NAME_STEPS = 255;

function decodeDomainSearch(v: Uint8Array): string[] {
  checkUint8Array(v, "domain search");
  if (v.length === 0) fail("domain search option is empty");
  const names: string[] = [];
  let pos = 0;
  while (pos < v.length) {
    let p = pos;
    let next = -1;
    // Every pointer must go strictly below the lowest offset already visited: no loop can form.
    let lowest = pos;
    let wire = 1;
    let steps = 0;
    let name = "";
    for (;;) {
      if (++steps > MAX_NAME_STEPS) fail("domain name has too many labels or pointers");
      if (p >= v.length) fail("domain name runs past the end of the option");
      const len = v[p]!;
      if (len === 0) {
        if (next < 0) next = p + 1;
        break;
      }
      const kind = len & 0xc0;
      if (kind === 0xc0) {
        if (p + 1 >= v.length) fail("compression pointer cut short");
        const target = ((len & 0x3f) << 8) | v[p + 1]!;
        if (target >= lowest) fail(`compression pointer to ${target} does not point backwards`);
        if (next < 0) next = p + 2;
        lowest = target;
        p = target;
        continue;
      }
      if (kind !== 0) fail(`label type 0x${HEX[kind]} is reserved`);
      if (p + 1 + len > v.length) fail("label runs past the end of the option");
      wire += len + 1;
      if (wire > MAX_NAME_WIRE) fail(`domain name longer than ${MAX_NAME_WIRE} bytes`);
      for (let i = p + 1; i <= p + len; i++) {
        const c = v[i]!;
        if (c < 0x21 || c > 0x7e || c === 0x2e) fail(`label byte ${c} is not printable ASCII other than '.'`);
      }
      const label = String.fromCharCode.apply(null, v.subarray(p + 1, p + 1 + len) as unknown as number[]);
      name = name === "" ? label : `${name}.${label}`;
      p += 1 + len;
    }
    if (name === "") fail("root name in a search list");
    names.push(name);
    pos = next;
  }
  return names;
}

// ---- option values: classless static routes (RFC 3442) --------------------------------------

const prefixMask = (w: number): number => (w === 0 ? 0 : (0xffffffff << (32 - w)) >>> 0);

function parseCidr(s: string): { net: number; width: number } {
  if (typeof s !== "string") return fail("route destination: not a string");
  const slash = s.indexOf("/");
  if (slash < 0) return fail(`route destination "${s}" has no /prefix`);
  const ws = s.slice(slash + 1);
  if (!/^(0|[1-9]\d?)$/.test(ws) || Number(ws) > 32) return fail(`route destination "${s}": bad prefix length`);
  const width = Number(ws);
  const net = ipv4ToU32(s.slice(0, slash), "route destination");
  // Host bits would be silently dropped by the octet truncation: refuse rather than mislead.
  if ((net & ~prefixMask(width)) >>> 0 !== 0) fail(`route destination "${s}" has host bits set`);
  return { net, width };
}

function encodeClasslessRoutes(routes: Array<{ dst: string; via: string }>): Uint8Array {
  if (!Array.isArray(routes) || routes.length === 0) fail("classless route list is empty");
  const parsed = routes.map((r) => ({ ...parseCidr(r.dst), via: ipv4ToU32(r.via, "route gateway") }));
  let size = 0;
  for (const r of parsed) size += 5 + ((r.width + 7) >> 3);
  const out = new Uint8Array(size);
  let pos = 0;
  for (const r of parsed) {
    out[pos++] = r.width;
    const sig = (r.width + 7) >> 3;
    for (let i = 0; i < sig; i++) out[pos++] = (r.net >>> (24 - 8 * i)) & 255;
    writeU32(out, pos, r.via);
    pos += 4;
  }
  return out;
}

function decodeClasslessRoutes(v: Uint8Array): Array<{ dst: string; via: string }> {
  checkUint8Array(v, "classless routes");
  if (v.length === 0) fail("classless routes option is empty");
  const routes: Array<{ dst: string; via: string }> = [];
  let pos = 0;
  while (pos < v.length) {
    const width = v[pos]!;
    if (width > 32) fail(`route prefix length ${width} exceeds 32`);
    const sig = (width + 7) >> 3;
    if (pos + 1 + sig + 4 > v.length) fail("classless route cut short");
    let net = 0;
    for (let i = 0; i < 4; i++) net = net * 256 + (i < sig ? v[pos + 1 + i]! : 0);
    if ((net & ~prefixMask(width)) >>> 0 !== 0) fail(`route ${u32ToIp(net)}/${width} has host bits set`);
    routes.push({ dst: `${u32ToIp(net)}/${width}`, via: ipAt(v, pos + 1 + sig) });
    pos += 1 + sig + 4;
  }
  return routes;
}

// ---- option value builders / readers ---------------------------------------------------------

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function exactLength(v: Uint8Array, n: number, what: string): Uint8Array {
  checkUint8Array(v, what);
  if (v.length !== n) fail(`${what}: ${v.length} bytes, expected ${n}`);
  return v;
}

export const enc: {
  ip(a: string): Uint8Array;
  ips(a: string[]): Uint8Array;
  u8(n: number): Uint8Array;
  u16(n: number): Uint8Array;
  u32(n: number): Uint8Array;
  /** UTF-8 (NVT ASCII is a subset); NUL characters are refused. */
  text(s: string): Uint8Array;
  /** RFC 3397 with RFC 1035 compression. */
  domainSearch(names: string[]): Uint8Array;
  /** RFC 3442; `dst` is a CIDR with no host bits set. */
  classlessRoutes(routes: Array<{ dst: string; via: string }>): Uint8Array;
} = {
  ip(a) {
    const out = new Uint8Array(4);
    writeU32(out, 0, ipv4ToU32(a, "address"));
    return out;
  },
  ips(a) {
    if (!Array.isArray(a) || a.length === 0) fail("address list is empty");
    const out = new Uint8Array(4 * a.length);
    for (let i = 0; i < a.length; i++) writeU32(out, 4 * i, ipv4ToU32(a[i]!, "address"));
    return out;
  },
  u8: (n) => Uint8Array.of(checkUint(n, 0xff, "u8")),
  u16(n) {
    checkUint(n, 0xffff, "u16");
    return Uint8Array.of(n >>> 8, n & 255);
  },
  u32(n) {
    const out = new Uint8Array(4);
    writeU32(out, 0, checkUint(n, 0xffffffff, "u32"));
    return out;
  },
  text(s) {
    if (typeof s !== "string") fail("text: not a string");
    if (s.includes("\0")) fail("text contains NUL");
    // A lone surrogate would be sent as U+FFFD: the peer would see a different string.
    if (!s.isWellFormed()) fail("text has a lone surrogate");
    return utf8Encoder.encode(s);
  },
  domainSearch: encodeDomainSearch,
  classlessRoutes: encodeClasslessRoutes,
};

export const dec: {
  u8(v: Uint8Array): number;
  u16(v: Uint8Array): number;
  u32(v: Uint8Array): number;
  ip(v: Uint8Array): string;
  ips(v: Uint8Array): string[];
  /** UTF-8; trailing NULs are dropped (RFC 2132 §2 requires receivers to accept them). */
  text(v: Uint8Array): string;
  domainSearch(v: Uint8Array): string[];
  classlessRoutes(v: Uint8Array): Array<{ dst: string; via: string }>;
} = {
  u8: (v) => exactLength(v, 1, "u8")[0]!,
  u16(v) {
    exactLength(v, 2, "u16");
    return (v[0]! << 8) | v[1]!;
  },
  u32(v) {
    exactLength(v, 4, "u32");
    return v[0]! * 0x1000000 + ((v[1]! << 16) | (v[2]! << 8) | v[3]!);
  },
  ip: (v) => ipAt(exactLength(v, 4, "address"), 0),
  ips(v) {
    checkUint8Array(v, "address list");
    if (v.length === 0 || v.length % 4 !== 0)
      fail(`address list of ${v.length} bytes is not a non-empty multiple of 4`);
    const out: string[] = [];
    for (let i = 0; i < v.length; i += 4) out.push(ipAt(v, i));
    return out;
  },
  text(v) {
    checkUint8Array(v, "text");
    let end = v.length;
    while (end > 0 && v[end - 1] === 0) end--;
    let s: string;
    try {
      s = utf8Decoder.decode(v.subarray(0, end));
    } catch {
      return fail("text is not valid UTF-8");
    }
    if (s.includes("\0")) fail("text contains an embedded NUL");
    return s;
  },
  domainSearch: decodeDomainSearch,
  classlessRoutes: decodeClasslessRoutes,
};
