/** DHCPv6 (RFC 8415) for Stratum's networks: the wire codec (decode throws only Dhcp6FormatError,
 * and every message it accepts encodes back to the same bytes) and the server's pure policy, which
 * maps a request and the endpoint its link-local source belongs to onto a reply or a reason to stay silent. */
import { bytesToIp, ipToBytes } from "../netlink/codec";

export class Dhcp6FormatError extends Error {
  override name = "Dhcp6FormatError";
}

export const DHCP6_SERVER_PORT = 547;
export const DHCP6_CLIENT_PORT = 546;
/** All_DHCP_Relay_Agents_and_Servers: where clients send everything. */
export const ALL_DHCP_SERVERS = "ff02::1:2";

export const MSG = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

const MSG_NAMES = Object.fromEntries(Object.entries(MSG).map(([k, v]) => [v, k.replace(/_/g, "-")])) as Record<
  number,
  string
>;
/** "SOLICIT", "INFORMATION-REQUEST", … or "TYPE-<n>". */
export const msgName = (type: number): string => MSG_NAMES[type] ?? `TYPE-${type}`;

export const OPT = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  RELAY_MSG: 9,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
  IA_PD: 25,
  IAPREFIX: 26,
  INFORMATION_REFRESH_TIME: 32,
} as const;

export const STATUS = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
  NoPrefixAvail: 6,
} as const;

export type Dhcp6Option =
  | { kind: "clientId"; duid: Buffer }
  | { kind: "serverId"; duid: Buffer }
  | { kind: "iaNa"; iaid: number; t1: number; t2: number; options: Dhcp6Option[] }
  | { kind: "iaTa"; iaid: number; options: Dhcp6Option[] }
  | { kind: "iaAddr"; address: string; preferred: number; valid: number; options: Dhcp6Option[] }
  | { kind: "iaPd"; iaid: number; t1: number; t2: number; options: Dhcp6Option[] }
  | { kind: "iaPrefix"; preferred: number; valid: number; prefixLength: number; prefix: string; options: Dhcp6Option[] }
  | { kind: "oro"; codes: number[] }
  | { kind: "preference"; value: number }
  /** Hundredths of a second since the client began this exchange. */
  | { kind: "elapsedTime"; value: number }
  /** Kept as bytes: relayed messages are refused, never unwrapped. */
  | { kind: "relayMsg"; data: Buffer }
  | { kind: "statusCode"; status: number; message: string }
  | { kind: "rapidCommit" }
  | { kind: "dnsServers"; servers: string[] }
  | { kind: "domainList"; domains: string[] }
  | { kind: "informationRefreshTime"; seconds: number }
  | { kind: "unknown"; code: number; data: Buffer };

/** A client/server message (every type but the two relay ones). */
export interface Dhcp6Message {
  type: number;
  /** 24 bits. */
  transactionId: number;
  options: Dhcp6Option[];
}

export interface Dhcp6RelayMessage {
  type: typeof MSG.RELAY_FORW | typeof MSG.RELAY_REPL;
  hopCount: number;
  linkAddress: string;
  peerAddress: string;
  options: Dhcp6Option[];
}

export const isRelay = (m: Dhcp6Message | Dhcp6RelayMessage): m is Dhcp6RelayMessage =>
  m.type === MSG.RELAY_FORW || m.type === MSG.RELAY_REPL;

// ---- decoding ---------------------------------------------------------------------------------

const fail = (msg: string): never => {
  throw new Dhcp6FormatError(msg);
};

/** IA options nest (IA_NA → IAADDR → STATUS_CODE); deeper nesting is an attack, not a client. */
const MAX_DEPTH = 3;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function decodeDhcp6(buf: Uint8Array): Dhcp6Message | Dhcp6RelayMessage {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 4) fail(`message of ${b.length} bytes is shorter than its 4-byte header`);
  const type = b[0] as number;
  if (type === MSG.RELAY_FORW || type === MSG.RELAY_REPL) {
    if (b.length < 34) fail(`relay message of ${b.length} bytes is shorter than its 34-byte header`);
    return {
      type,
      hopCount: b[1] as number,
      linkAddress: bytesToIp(b.subarray(2, 18)),
      peerAddress: bytesToIp(b.subarray(18, 34)),
      options: decodeOptions(b.subarray(34), 0),
    };
  }
  return { type, transactionId: b.readUIntBE(1, 3), options: decodeOptions(b.subarray(4), 0) };
}

function decodeOptions(b: Buffer, depth: number): Dhcp6Option[] {
  if (depth > MAX_DEPTH && b.length > 0) fail("options nested too deeply");
  const out: Dhcp6Option[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 4) fail(`truncated option header at offset ${off}`);
    const code = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    if (off + 4 + len > b.length) fail(`option ${code} claims ${len} bytes, ${b.length - off - 4} left`);
    out.push(decodeOption(code, b.subarray(off + 4, off + 4 + len), depth));
    off += 4 + len;
  }
  return out;
}

function need(code: number, d: Buffer, min: number, max = min): void {
  if (d.length < min || d.length > max)
    fail(`option ${code} has ${d.length} bytes, expected ${min === max ? min : `${min}-${max}`}`);
}

function decodeOption(code: number, d: Buffer, depth: number): Dhcp6Option {
  switch (code) {
    case OPT.CLIENTID:
    case OPT.SERVERID:
      // A DUID is a 2-byte type and at most 128 bytes of identifier.
      need(code, d, 2, 130);
      return { kind: code === OPT.CLIENTID ? "clientId" : "serverId", duid: Buffer.from(d) };
    case OPT.IA_NA:
    case OPT.IA_PD: {
      if (d.length < 12) fail(`option ${code} has ${d.length} bytes, expected at least 12`);
      return {
        kind: code === OPT.IA_NA ? "iaNa" : "iaPd",
        iaid: d.readUInt32BE(0),
        t1: d.readUInt32BE(4),
        t2: d.readUInt32BE(8),
        options: decodeOptions(d.subarray(12), depth + 1),
      };
    }
    case OPT.IA_TA:
      if (d.length < 4) fail(`option ${code} has ${d.length} bytes, expected at least 4`);
      return { kind: "iaTa", iaid: d.readUInt32BE(0), options: decodeOptions(d.subarray(4), depth + 1) };
    case OPT.IAADDR:
      if (d.length < 24) fail(`option ${code} has ${d.length} bytes, expected at least 24`);
      return {
        kind: "iaAddr",
        address: bytesToIp(d.subarray(0, 16)),
        preferred: d.readUInt32BE(16),
        valid: d.readUInt32BE(20),
        options: decodeOptions(d.subarray(24), depth + 1),
      };
    case OPT.IAPREFIX:
      if (d.length < 25) fail(`option ${code} has ${d.length} bytes, expected at least 25`);
      return {
        kind: "iaPrefix",
        preferred: d.readUInt32BE(0),
        valid: d.readUInt32BE(4),
        prefixLength: d[8] as number,
        prefix: bytesToIp(d.subarray(9, 25)),
        options: decodeOptions(d.subarray(25), depth + 1),
      };
    case OPT.ORO: {
      if (d.length % 2 !== 0) fail(`option request of odd length ${d.length}`);
      const codes: number[] = [];
      for (let i = 0; i < d.length; i += 2) codes.push(d.readUInt16BE(i));
      return { kind: "oro", codes };
    }
    case OPT.PREFERENCE:
      need(code, d, 1);
      return { kind: "preference", value: d[0] as number };
    case OPT.ELAPSED_TIME:
      need(code, d, 2);
      return { kind: "elapsedTime", value: d.readUInt16BE(0) };
    case OPT.RELAY_MSG:
      return { kind: "relayMsg", data: Buffer.from(d) };
    case OPT.STATUS_CODE: {
      if (d.length < 2) fail(`status code option of ${d.length} bytes`);
      let message = "";
      try {
        message = utf8.decode(d.subarray(2));
      } catch {
        fail("status message is not UTF-8");
      }
      return { kind: "statusCode", status: d.readUInt16BE(0), message };
    }
    case OPT.RAPID_COMMIT:
      need(code, d, 0);
      return { kind: "rapidCommit" };
    case OPT.DNS_SERVERS: {
      if (d.length % 16 !== 0) fail(`DNS servers option of ${d.length} bytes is not a list of addresses`);
      const servers: string[] = [];
      for (let i = 0; i < d.length; i += 16) servers.push(bytesToIp(d.subarray(i, i + 16)));
      return { kind: "dnsServers", servers };
    }
    case OPT.DOMAIN_LIST:
      return { kind: "domainList", domains: decodeDnsNames(d, (m) => new Dhcp6FormatError(`domain list: ${m}`)) };
    case OPT.INFORMATION_REFRESH_TIME:
      need(code, d, 4);
      return { kind: "informationRefreshTime", seconds: d.readUInt32BE(0) };
    default:
      return { kind: "unknown", code, data: Buffer.from(d) };
  }
}

// ---- encoding ---------------------------------------------------------------------------------

export function encodeDhcp6(m: Dhcp6Message | Dhcp6RelayMessage): Buffer {
  const opts = encodeOptions(m.options);
  if (isRelay(m)) {
    const h = Buffer.alloc(34);
    h[0] = m.type;
    h[1] = m.hopCount & 0xff;
    addr16(m.linkAddress).copy(h, 2);
    addr16(m.peerAddress).copy(h, 18);
    return Buffer.concat([h, opts]);
  }
  if (m.type === MSG.RELAY_FORW || m.type === MSG.RELAY_REPL) fail("relay message without relay fields");
  const h = Buffer.alloc(4);
  h[0] = m.type & 0xff;
  h.writeUIntBE(m.transactionId & 0xffffff, 1, 3);
  return Buffer.concat([h, opts]);
}

function addr16(ip: string): Buffer {
  let b: Buffer | undefined;
  try {
    b = ipToBytes(ip);
  } catch {}
  if (b?.length !== 16) return fail(`"${ip}" is not an IPv6 address`);
  return b;
}

const u32 = (...xs: number[]): Buffer => {
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => {
    b.writeUInt32BE(x >>> 0, i * 4);
  });
  return b;
};

function encodeOptions(options: Dhcp6Option[]): Buffer {
  return Buffer.concat(options.map(encodeOption));
}

function encodeOption(o: Dhcp6Option): Buffer {
  const [code, body] = optionBody(o);
  if (body.length > 0xffff) fail(`option ${code} of ${body.length} bytes does not fit`);
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function optionBody(o: Dhcp6Option): [number, Buffer] {
  switch (o.kind) {
    case "clientId":
      return [OPT.CLIENTID, o.duid];
    case "serverId":
      return [OPT.SERVERID, o.duid];
    case "iaNa":
      return [OPT.IA_NA, Buffer.concat([u32(o.iaid, o.t1, o.t2), encodeOptions(o.options)])];
    case "iaPd":
      return [OPT.IA_PD, Buffer.concat([u32(o.iaid, o.t1, o.t2), encodeOptions(o.options)])];
    case "iaTa":
      return [OPT.IA_TA, Buffer.concat([u32(o.iaid), encodeOptions(o.options)])];
    case "iaAddr":
      return [OPT.IAADDR, Buffer.concat([addr16(o.address), u32(o.preferred, o.valid), encodeOptions(o.options)])];
    case "iaPrefix":
      return [
        OPT.IAPREFIX,
        Buffer.concat([
          u32(o.preferred, o.valid),
          Buffer.of(o.prefixLength & 0xff),
          addr16(o.prefix),
          encodeOptions(o.options),
        ]),
      ];
    case "oro": {
      const b = Buffer.alloc(o.codes.length * 2);
      o.codes.forEach((c, i) => {
        b.writeUInt16BE(c & 0xffff, i * 2);
      });
      return [OPT.ORO, b];
    }
    case "preference":
      return [OPT.PREFERENCE, Buffer.of(o.value & 0xff)];
    case "elapsedTime": {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(o.value & 0xffff);
      return [OPT.ELAPSED_TIME, b];
    }
    case "relayMsg":
      return [OPT.RELAY_MSG, o.data];
    case "statusCode": {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(o.status & 0xffff);
      return [OPT.STATUS_CODE, Buffer.concat([b, Buffer.from(o.message, "utf8")])];
    }
    case "rapidCommit":
      return [OPT.RAPID_COMMIT, Buffer.alloc(0)];
    case "dnsServers":
      return [OPT.DNS_SERVERS, Buffer.concat(o.servers.map(addr16))];
    case "domainList":
      return [OPT.DOMAIN_LIST, encodeDnsNames(o.domains, (m) => new Dhcp6FormatError(`domain list: ${m}`))];
    case "informationRefreshTime":
      return [OPT.INFORMATION_REFRESH_TIME, u32(o.seconds)];
    case "unknown":
      return [o.code, o.data];
  }
}

// ---- DNS names (RFC 1035 wire form, uncompressed), shared with router advertisements ---------

/** Label characters accepted on the wire: what a host name or a search domain can hold. Anything
 * else (a dot inside a label, control bytes) has no faithful text form, so it is refused. */
const LABEL_RE = /^[A-Za-z0-9_-]{1,63}$/;

/** Names ("a.example", no trailing dot; "" is the root) → concatenated wire names. */
export function encodeDnsNames(names: string[], err: (m: string) => Error): Buffer {
  const parts: Buffer[] = [];
  for (const name of names) {
    const n = name.replace(/\.$/, "");
    const labels = n === "" ? [] : n.split(".");
    let size = 1;
    for (const l of labels) {
      if (!LABEL_RE.test(l)) throw err(`invalid label "${l}" in "${name}"`);
      parts.push(Buffer.of(l.length), Buffer.from(l, "ascii"));
      size += 1 + l.length;
    }
    if (size > 255) throw err(`"${name}" is longer than 255 bytes`);
    parts.push(Buffer.of(0));
  }
  return Buffer.concat(parts);
}

/** Wire names back to text. `padded` lets trailing zero bytes end the list (RA DNSSL padding). */
export function decodeDnsNames(d: Buffer, err: (m: string) => Error, padded = false): string[] {
  const names: string[] = [];
  let off = 0;
  while (off < d.length) {
    if (padded && d.subarray(off).every((x) => x === 0)) break;
    const labels: string[] = [];
    let size = 1;
    for (;;) {
      if (off >= d.length) throw err("name runs past the end");
      const len = d[off] as number;
      off++;
      if (len === 0) break;
      // 0xc0 pointers (compression) are forbidden here: RFC 8415 §10 and RFC 8106 §5.2.
      if (len > 63) throw err(`label length ${len} (compression is not allowed)`);
      if (off + len > d.length) throw err("label runs past the end");
      const l = d.toString("latin1", off, off + len);
      if (!LABEL_RE.test(l)) throw err(`label with characters a domain name cannot hold`);
      labels.push(l);
      size += 1 + len;
      if (size > 255) throw err("name longer than 255 bytes");
      off += len;
    }
    names.push(labels.join("."));
  }
  return names;
}

// ---- identities -------------------------------------------------------------------------------

/** DUID-LL (RFC 8415 §11.4) of an Ethernet MAC: type 3, hardware type 1, the MAC. */
export function duidLl(mac: string): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt16BE(3, 0);
  b.writeUInt16BE(1, 2);
  mac.split(":").forEach((x, i) => {
    b[4 + i] = Number.parseInt(x, 16);
  });
  return b;
}

/** The MAC whose EUI-64 made this link-local address (fe80::/64, ff:fe in the middle), else null.
 * Port programs only let a workload send from its EUI-64 link-local, so this names the sender. */
export function macFromLinkLocal(address: string): string | null {
  let b: Buffer;
  try {
    b = ipToBytes(address.replace(/%.*$/, ""));
  } catch {
    return null;
  }
  if (b.length !== 16 || b.readUInt16BE(0) !== 0xfe80 || b.readUInt16BE(2) || b.readUInt32BE(4)) return null;
  if (b[11] !== 0xff || b[12] !== 0xfe) return null;
  const mac = [(b[8] as number) ^ 0x02, b[9], b[10], b[13], b[14], b[15]] as number[];
  return mac.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

// ---- policy -----------------------------------------------------------------------------------

/** What the server knows about the endpoint behind a request. */
export interface Dhcp6Client {
  endpoint: string;
  network: string;
  /** The profile address: the only one the endpoint may use. */
  ip6: string;
  cidr6: string;
  gateway6: string;
  dnsZone: string;
  /** Seconds. */
  leaseTime: number;
}

export interface Dhcp6Grant {
  endpoint: string;
  network: string;
  ip6: string;
  iaid: number;
  /** Client DUID, hex. */
  duid: string;
  validSeconds: number;
}

export type Dhcp6IgnoreReason =
  | "relay" // relayed messages are refused: every network is served on its own link
  | "unknown-client" // the source is not the link-local of a claimed endpoint
  | "not-for-us" // carries another server's identifier
  | "invalid" // breaks RFC 8415 §16 (missing client id, IA in an Information-request, …)
  | "not-a-request"; // a server's message type, or one this server does not answer

export type Dhcp6Decision =
  | {
      action: "reply";
      reply: Dhcp6Message;
      grants: Dhcp6Grant[];
      /** Bindings the client ends: its own endpoint's only, whatever DUID it names. */
      releases: Array<{ endpoint: string; duid: string; iaid: number }>;
      /** The client says someone else already uses its profile address (DECLINE). */
      declined?: string[];
    }
  | { action: "ignore"; reason: Dhcp6IgnoreReason };

export interface Dhcp6Context {
  /** Source address of the request (scope suffix allowed). */
  source: string;
  serverDuid: Buffer;
  lookup: (mac: string) => Dhcp6Client | undefined;
}

/** Lease times derived from the network's lease time: RFC 8415 §21.4 T1 = 0.5, T2 = 0.8 of the
 * preferred lifetime, and preferred = valid because the address never changes. */
export function leaseTimes(leaseTime: number): { t1: number; t2: number; preferred: number; valid: number } {
  const valid = Math.max(60, Math.floor(leaseTime));
  return { t1: Math.floor(valid * 0.5), t2: Math.floor(valid * 0.8), preferred: valid, valid };
}

const find = <K extends Dhcp6Option["kind"]>(opts: Dhcp6Option[], kind: K) =>
  opts.find((o) => o.kind === kind) as Extract<Dhcp6Option, { kind: K }> | undefined;
const all = <K extends Dhcp6Option["kind"]>(opts: Dhcp6Option[], kind: K) =>
  opts.filter((o) => o.kind === kind) as Extract<Dhcp6Option, { kind: K }>[];

function inSubnet6(cidr6: string, ip: string): boolean {
  const [net, lenText] = cidr6.split("/");
  let a: Buffer;
  let n: Buffer;
  try {
    a = ipToBytes(ip);
    n = ipToBytes(net as string);
  } catch {
    return false;
  }
  if (a.length !== 16) return false;
  const len = Number(lenText);
  for (let bit = 0; bit < len; bit++) {
    const mask = 0x80 >> (bit % 8);
    if (((a[bit >> 3] as number) & mask) !== ((n[bit >> 3] as number) & mask)) return false;
  }
  return true;
}

/** The server's answer to one request (RFC 8415 §16 validation, §18.3 behaviour). Addresses are
 * not allocated: each endpoint has exactly one, its profile address, so every IA_NA gets it. */
export function answerDhcp6(req: Dhcp6Message | Dhcp6RelayMessage, ctx: Dhcp6Context): Dhcp6Decision {
  const ignore = (reason: Dhcp6IgnoreReason): Dhcp6Decision => ({ action: "ignore", reason });
  if (isRelay(req)) return ignore("relay");
  const asks = [
    MSG.SOLICIT,
    MSG.REQUEST,
    MSG.CONFIRM,
    MSG.RENEW,
    MSG.REBIND,
    MSG.RELEASE,
    MSG.DECLINE,
    MSG.INFORMATION_REQUEST,
  ] as number[];
  if (!asks.includes(req.type)) return ignore("not-a-request");

  const mac = macFromLinkLocal(ctx.source);
  const client = mac ? ctx.lookup(mac) : undefined;
  if (!client) return ignore("unknown-client");

  const clientId = find(req.options, "clientId");
  const serverId = find(req.options, "serverId");
  const ours = serverId?.duid.equals(ctx.serverDuid) ?? false;
  if (serverId && !ours) return ignore("not-for-us");
  const requireServerId = [MSG.REQUEST, MSG.RENEW, MSG.RELEASE, MSG.DECLINE] as number[];
  const forbidServerId = [MSG.SOLICIT, MSG.CONFIRM, MSG.REBIND] as number[];
  if (req.type !== MSG.INFORMATION_REQUEST && !clientId) return ignore("invalid");
  if (requireServerId.includes(req.type) && !ours) return ignore("invalid");
  if (forbidServerId.includes(req.type) && serverId) return ignore("invalid");

  const duidHex = clientId ? clientId.duid.toString("hex") : "";
  const head: Dhcp6Option[] = [{ kind: "serverId", duid: ctx.serverDuid }];
  if (clientId) head.push(clientId);
  const dns: Dhcp6Option[] = [
    { kind: "dnsServers", servers: [client.gateway6] },
    { kind: "domainList", domains: [client.dnsZone] },
  ];
  const reply = (type: number, options: Dhcp6Option[], extra: Partial<Dhcp6Decision & { action: "reply" }> = {}) =>
    ({
      action: "reply",
      reply: { type, transactionId: req.transactionId, options: [...head, ...options] },
      grants: [],
      releases: [],
      ...extra,
    }) as Dhcp6Decision;
  const iaNas = all(req.options, "iaNa");
  const hasIa = req.options.some((o) => o.kind === "iaNa" || o.kind === "iaTa" || o.kind === "iaPd");

  const t = leaseTimes(client.leaseTime);
  /** Our IAs for the client's: the profile address in every IA_NA (and the end of any other
   * address the client still holds), nothing for temporary addresses or prefixes. */
  const answerIas = (): Dhcp6Option[] =>
    req.options.flatMap((o): Dhcp6Option[] => {
      if (o.kind === "iaNa") {
        const stale = all(o.options, "iaAddr")
          .filter((a) => a.address !== client.ip6)
          .map((a): Dhcp6Option => ({ kind: "iaAddr", address: a.address, preferred: 0, valid: 0, options: [] }));
        return [
          {
            kind: "iaNa",
            iaid: o.iaid,
            t1: t.t1,
            t2: t.t2,
            options: [
              { kind: "iaAddr", address: client.ip6, preferred: t.preferred, valid: t.valid, options: [] },
              ...stale,
            ],
          },
        ];
      }
      if (o.kind === "iaTa")
        return [
          {
            kind: "iaTa",
            iaid: o.iaid,
            options: [{ kind: "statusCode", status: STATUS.NoAddrsAvail, message: "no temporary addresses" }],
          },
        ];
      if (o.kind === "iaPd")
        return [
          {
            kind: "iaPd",
            iaid: o.iaid,
            t1: 0,
            t2: 0,
            options: [{ kind: "statusCode", status: STATUS.NoPrefixAvail, message: "no prefix delegation" }],
          },
        ];
      return [];
    });
  const grants = (): Dhcp6Grant[] =>
    iaNas.map((ia) => ({
      endpoint: client.endpoint,
      network: client.network,
      ip6: client.ip6,
      iaid: ia.iaid,
      duid: duidHex,
      validSeconds: t.valid,
    }));

  switch (req.type) {
    case MSG.SOLICIT:
      if (find(req.options, "rapidCommit"))
        return reply(MSG.REPLY, [{ kind: "rapidCommit" }, ...answerIas(), ...dns], { grants: grants() });
      // Preference 255: the client takes this offer at once instead of waiting for others (§18.2.1);
      // each network has one server.
      return reply(MSG.ADVERTISE, [{ kind: "preference", value: 255 }, ...answerIas(), ...dns]);
    case MSG.REQUEST:
    case MSG.RENEW:
    case MSG.REBIND:
      return reply(MSG.REPLY, [...answerIas(), ...dns], { grants: grants() });
    case MSG.CONFIRM: {
      const addrs = req.options
        .filter((o) => o.kind === "iaNa" || o.kind === "iaTa")
        .flatMap((o) => all((o as { options: Dhcp6Option[] }).options, "iaAddr").map((a) => a.address));
      // §18.3.3: with no addresses to confirm there is nothing to say.
      if (addrs.length === 0) return ignore("invalid");
      const onLink = addrs.every((a) => inSubnet6(client.cidr6, a));
      return reply(MSG.REPLY, [
        onLink
          ? { kind: "statusCode", status: STATUS.Success, message: "on link" }
          : { kind: "statusCode", status: STATUS.NotOnLink, message: `not on ${client.cidr6}` },
      ]);
    }
    case MSG.RELEASE:
    case MSG.DECLINE: {
      const declined =
        req.type === MSG.DECLINE ? iaNas.flatMap((ia) => all(ia.options, "iaAddr").map((a) => a.address)) : undefined;
      return reply(MSG.REPLY, [{ kind: "statusCode", status: STATUS.Success, message: "done" }], {
        releases: iaNas.map((ia) => ({ endpoint: client.endpoint, duid: duidHex, iaid: ia.iaid })),
        declined,
      });
    }
    case MSG.INFORMATION_REQUEST:
      // §16.12: an Information-request carrying an IA is discarded.
      if (hasIa) return ignore("invalid");
      return reply(MSG.REPLY, dns);
  }
  return ignore("not-a-request");
}
