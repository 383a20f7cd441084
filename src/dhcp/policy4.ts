/** What a network's DHCPv4 server answers (RFC 2131 §4.3), as a pure function of the request
 * and the endpoint that holds the client's MAC: the lease is always the profile's address,
 * so an unknown MAC gets nothing and a flood of made-up MACs allocates nothing. No I/O. */
import { formatIp, hostRange, parseIp, parseSubnet } from "../model/ip";
import { parseDhcpOption } from "../model/network";
import type { StoredNetwork } from "../store/store";
import { DHCP4, Dhcp4FormatError, type Dhcp4Message, dec, enc, encodeDhcp4, macOf, messageType, OPT } from "./v4";

/** The endpoint a client MAC belongs to, with its network. */
export interface Binding4 {
  endpoint: string;
  network: StoredNetwork;
  ip: string;
  mac: string;
}

/** Why a request got no answer: each is counted. */
export type Ignore4 =
  | "not-a-request"
  | "bootp" // no message type: plain BOOTP, not served
  | "relayed" // giaddr or relay-agent information: workloads are never relays
  | "unknown-client" // no claimed profile holds this MAC
  | "outside-range" // the profile's address is outside the network's DHCP range (a static endpoint)
  | "other-server" // a REQUEST that chose another server
  | "wrong-address" // an INFORM from an address that is not the client's profile's
  | "bad-type";

export type Outcome4 =
  | {
      kind: "reply";
      type: number;
      reply: Dhcp4Message;
      to: "unicast" | "broadcast";
      dest: string;
      /** The network's gateway: the reply's source address. */
      source: string;
    }
  | { kind: "ignore"; why: Ignore4 }
  | { kind: "release"; binding: Binding4 }
  | { kind: "decline"; binding: Binding4 };

const ZERO = "0.0.0.0";
const NONE = new Uint8Array(0);

export const TYPE_NAMES: Record<number, string> = {
  1: "discover",
  2: "offer",
  3: "request",
  4: "decline",
  5: "ack",
  6: "nak",
  7: "release",
  8: "inform",
};

/** In the network's DHCP range? Endpoints outside it are configured by hand and not served. */
export function inRange(n: StoredNetwork, ip: string): boolean {
  const v = parseIp(ip).value;
  return v >= parseIp(n.dhcpRange.first).value && v <= parseIp(n.dhcpRange.last).value;
}

/** What a binding's replies share, worked out once per binding object (bindings are rebuilt
 * whenever a network or endpoint changes, so a stale entry is never reached): whether it is
 * served at all, its full option lists (lease and INFORM), and the lists cut to what recent
 * parameter request lists asked for. */
interface BindingMemo {
  served: boolean;
  full: Map<boolean, Offered[]>;
  cut: Map<string, Array<[number, Uint8Array]>>;
}
/** An option of a reply, and whether it goes whether or not the client asked for it. */
type Offered = [code: number, value: Uint8Array, always: boolean];
/** Distinct parameter request lists remembered per binding (clients send one or two). */
const MAX_CUTS = 16;
const memo = new WeakMap<Binding4, BindingMemo>();

function memoOf(b: Binding4): BindingMemo {
  let m = memo.get(b);
  if (m === undefined) {
    m = { served: inRange(b.network, b.ip), full: new Map(), cut: new Map() };
    memo.set(b, m);
  }
  return m;
}

function maskOf(prefixLen: number): string {
  const m = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join(".");
}

/** The options of an OFFER/ACK (lease: false for an INFORM's ACK), most important first so
 * that a client's small maximum size drops only the tail. What every client needs goes
 * always: the lease and its timers, mask, router, DNS server and domain; so do the MTU when
 * it is not Ethernet's 1500 (an overlay network's 1450 must reach clients that forget to ask),
 * the network's own routes, and the operator's --dhcp-option values. The rest (broadcast
 * address, host name, search list, option 121 with only the default route) goes when the
 * client's parameter request list (55) names it, as RFC 2131 §4.3.1 has servers do: fewer
 * bytes for every client to parse. */
function leaseOptions(b: Binding4, type: number, lease: boolean, requested: Uint8Array): Array<[number, Uint8Array]> {
  const m = memoOf(b);
  const key = `${lease ? 1 : 0}${requested.join(",")}`;
  let cut = m.cut.get(key);
  if (cut === undefined) {
    let full = m.full.get(lease);
    if (full === undefined) {
      full = buildLeaseOptions(b, lease);
      m.full.set(lease, full);
    }
    cut = [];
    for (const [code, value, always] of full) if (always || requested.includes(code)) cut.push([code, value]);
    if (m.cut.size < MAX_CUTS) m.cut.set(key, cut);
  }
  return [[OPT.MSG_TYPE, enc.u8(type)], ...cut];
}

/** Every option a binding's replies may carry, without the message type (it varies). */
function buildLeaseOptions(b: Binding4, lease: boolean): Offered[] {
  const n = b.network;
  const s = parseSubnet(n.cidr);
  const r = hostRange(s);
  const opts: Offered[] = [[OPT.SERVER_ID, enc.ip(n.gateway), true]];
  if (lease) {
    opts.push([OPT.LEASE_TIME, enc.u32(n.dhcpLeaseTime), true]);
    opts.push([OPT.T1, enc.u32(Math.floor(n.dhcpLeaseTime / 2)), true]);
    opts.push([OPT.T2, enc.u32(Math.floor((n.dhcpLeaseTime * 7) / 8)), true]);
  }
  opts.push([OPT.SUBNET_MASK, enc.ip(maskOf(s.prefixLen)), true]);
  opts.push([OPT.ROUTER, enc.ip(n.gateway), true]);
  opts.push([OPT.DNS, enc.ip(n.gateway), true]);
  opts.push([OPT.DOMAIN_NAME, enc.text(n.dnsZone), true]);
  opts.push([OPT.MTU, enc.u16(n.mtu), n.mtu !== 1500]);
  opts.push([OPT.BROADCAST, enc.ip(formatIp({ family: 4, value: r.last + 1n })), false]);
  opts.push([OPT.HOSTNAME, enc.text(b.endpoint), false]);
  opts.push([OPT.DOMAIN_SEARCH, enc.domainSearch([n.dnsZone]), false]);
  // RFC 3442: a client that gets option 121 ignores option 3, so the default route leads.
  opts.push([
    OPT.CLASSLESS_ROUTES,
    enc.classlessRoutes([
      { dst: "0.0.0.0/0", via: n.gateway },
      ...n.dhcpRoutes.map((x) => {
        const [dst, , via] = x.split(" ");
        return { dst: dst as string, via: via as string };
      }),
    ]),
    n.dhcpRoutes.length > 0,
  ]);
  for (const o of n.dhcpOptions) {
    const p = parseDhcpOption(o);
    opts.push([p.code, p.value, true]);
  }
  return opts;
}

function baseReply(req: Dhcp4Message, options: Array<[number, Uint8Array]>, yiaddr: string): Dhcp4Message {
  return {
    op: 2,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr: req.ciaddr,
    yiaddr,
    siaddr: ZERO,
    giaddr: ZERO,
    chaddr: req.chaddr,
    sname: "",
    file: "",
    options: new Map(options),
  };
}

/** Encodes a reply within the client's maximum message size (option 57, at least 576):
 * when everything does not fit, the options the client did not ask for go first. */
export function encodeReply(reply: Dhcp4Message, req: Dhcp4Message): Uint8Array {
  const mms = req.options.get(OPT.MAX_SIZE);
  let max = 576;
  if (mms?.length === 2) max = Math.max(576, dec.u16(mms));
  try {
    return encodeDhcp4(reply, max);
  } catch (e) {
    if (!(e instanceof Dhcp4FormatError)) throw e;
  }
  const prl = new Set(req.options.get(OPT.PARAM_LIST) ?? []);
  const must = new Set<number>([OPT.MSG_TYPE, OPT.SERVER_ID, OPT.LEASE_TIME, OPT.SUBNET_MASK, OPT.ROUTER, OPT.MESSAGE]);
  const slim = { ...reply, options: new Map([...reply.options].filter(([c]) => must.has(c) || prl.has(c))) };
  try {
    return encodeDhcp4(slim, max);
  } catch (e) {
    if (!(e instanceof Dhcp4FormatError)) throw e;
    return encodeDhcp4({ ...reply, options: new Map([...reply.options].filter(([c]) => must.has(c))) }, max);
  }
}

/** Where a reply goes (RFC 2131 §4.1, giaddr is always zero here): a NAK is broadcast; a
 * client that asked for broadcast (and has no address yet) gets it; else unicast to the
 * client's profile address at its MAC (the caller installs that neighbour). Never to the
 * ciaddr a client names: a reply lands on the address its profile owns, on its own network,
 * whatever the request says (the callers refuse a ciaddr that is not that address). */
function route(req: Dhcp4Message, type: number, ip: string): { to: "unicast" | "broadcast"; dest: string } {
  if (type === DHCP4.NAK) return { to: "broadcast", dest: "255.255.255.255" };
  if (req.ciaddr === ZERO && req.flags & 0x8000) return { to: "broadcast", dest: "255.255.255.255" };
  return { to: "unicast", dest: ip };
}

function nak(req: Dhcp4Message, b: Binding4, why: string): Outcome4 {
  const reply = baseReply(
    req,
    [
      [OPT.MSG_TYPE, enc.u8(DHCP4.NAK)],
      [OPT.SERVER_ID, enc.ip(b.network.gateway)],
      [OPT.MESSAGE, enc.text(why)],
    ],
    ZERO,
  );
  reply.ciaddr = ZERO;
  return { kind: "reply", type: DHCP4.NAK, reply, ...route(req, DHCP4.NAK, ZERO), source: b.network.gateway };
}

/** The server's answer to one parsed request from a workload. `lookup` finds the endpoint
 * whose profile MAC is `mac` (the datapath has already checked that chaddr is the sending
 * port's own MAC). */
export function respond4(req: Dhcp4Message, lookup: (mac: string) => Binding4 | undefined): Outcome4 {
  if (req.op !== 1) return { kind: "ignore", why: "not-a-request" };
  if (req.giaddr !== ZERO || req.options.has(OPT.RELAY_AGENT)) return { kind: "ignore", why: "relayed" };
  const type = messageType(req);
  if (type === undefined) return { kind: "ignore", why: "bootp" };
  if (req.htype !== 1 || req.hlen !== 6) return { kind: "ignore", why: "unknown-client" };
  const b = lookup(macOf(req));
  if (!b) return { kind: "ignore", why: "unknown-client" };
  if (!memoOf(b).served) return { kind: "ignore", why: "outside-range" };
  const requested = req.options.get(OPT.PARAM_LIST) ?? NONE;
  const sidRaw = req.options.get(OPT.SERVER_ID);
  const sid = sidRaw?.length === 4 ? dec.ip(sidRaw) : undefined;
  const reqRaw = req.options.get(OPT.REQUESTED_IP);
  const reqIp = reqRaw?.length === 4 ? dec.ip(reqRaw) : undefined;
  const offer = (t: number): Outcome4 => {
    const reply = baseReply(req, leaseOptions(b, t, true, requested), b.ip);
    return { kind: "reply", type: t, reply, ...route(req, t, b.ip), source: b.network.gateway };
  };

  switch (type) {
    case DHCP4.DISCOVER:
      return offer(DHCP4.OFFER);
    case DHCP4.REQUEST: {
      if (sid !== undefined) {
        // SELECTING: the client chose among offers; not us → forget it quietly.
        if (sid !== b.network.gateway) return { kind: "ignore", why: "other-server" };
        if (reqIp !== b.ip) return nak(req, b, `the address of this client is ${b.ip}`);
        return offer(DHCP4.ACK);
      }
      // INIT-REBOOT (requested address, no ciaddr) or RENEWING/REBINDING (ciaddr): both must
      // be the profile's address when given.
      const claimed = reqIp ?? (req.ciaddr !== ZERO ? req.ciaddr : undefined);
      if (claimed === undefined) return { kind: "ignore", why: "bad-type" };
      if (claimed !== b.ip || (req.ciaddr !== ZERO && req.ciaddr !== b.ip))
        return nak(req, b, `the address of this client is ${b.ip}`);
      return offer(DHCP4.ACK);
    }
    case DHCP4.DECLINE:
      if (sid !== undefined && sid !== b.network.gateway) return { kind: "ignore", why: "other-server" };
      return { kind: "decline", binding: b };
    case DHCP4.RELEASE:
      if (req.ciaddr !== b.ip) return { kind: "ignore", why: "bad-type" };
      return { kind: "release", binding: b };
    case DHCP4.INFORM: {
      // The client has its address; it wants the rest (no lease, yiaddr zero; RFC 2131 §3.4).
      // Its address is its profile's: an INFORM naming another is not answered.
      if (req.ciaddr !== ZERO && req.ciaddr !== b.ip) return { kind: "ignore", why: "wrong-address" };
      const reply = baseReply(req, leaseOptions(b, DHCP4.ACK, false, requested), ZERO);
      return { kind: "reply", type: DHCP4.ACK, reply, to: "unicast", dest: b.ip, source: b.network.gateway };
    }
    default:
      return { kind: "ignore", why: "bad-type" };
  }
}
