/** Networks and endpoint profiles as the user declares them, and every rule a declaration
 * must pass before anything is stored or touches the kernel. Pure. */

import { z } from "zod";
import { StratumError } from "../errors";
import { type EgressCap, EgressCapSchema, validateCap } from "./egress-cap";
import {
  contains,
  type Family,
  formatIp,
  formatSubnet,
  hostRange,
  overlaps,
  parseIp,
  parseSubnet,
  type Subnet,
  usableHosts,
} from "./ip";

/** Names become DNS labels (`<endpoint>.<network>.internal`) and interface-name parts. */
const NAME_RE = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/** Network names the API and CLI give another meaning (`/v1/firewall/global`, `firewall … --global`). */
export const RESERVED_NETWORK_NAMES = ["global"] as const;

export function checkName(kind: "network" | "endpoint", name: string): string {
  if (!NAME_RE.test(name))
    throw new StratumError(
      "INVALID",
      `invalid ${kind} name "${name}": 1-32 characters, lower-case letters, digits and '-', starting with a letter and not ending with '-'`,
    );
  if (kind === "network" && (RESERVED_NETWORK_NAMES as readonly string[]).includes(name))
    throw new StratumError(
      "INVALID",
      `network name "${name}" is reserved (it names the firewall's node-wide scope): choose another`,
    );
  return name;
}

/** Largest IPv4 network whose every address is materialised as a profile (a /16: 65,534). */
export const MIN_PREFIX_V4 = 16;
/** Smallest IPv4 network that still holds a gateway and an endpoint. */
export const MAX_PREFIX_V4 = 30;
export const MTU_RANGE = [576, 9000] as const;

export const NetworkSpecSchema = z.object({
  name: z.string(),
  cidr: z.string(),
  gateway: z.string(),
  cidr6: z.string().optional(),
  gateway6: z.string().optional(),
  dhcpRange: z.string().optional(),
  dnsZone: z.string().optional(),
  dnsForwarders: z.array(z.string()).default([]),
  mtu: z.number().int().optional(),
  defaultAction: z.enum(["allow", "deny"]).default("allow"),
  dhcpLeaseTime: z.number().int().optional(),
  dhcpRoutes: z.array(z.string()).optional(),
  dhcpOptions: z.array(z.string()).optional(),
  /** Aggregate cap on what the network's endpoints send off the node (bit/s and bytes). */
  egress: EgressCapSchema.nullable().optional(),
  /** The network is extended onto the uplink's LAN: its subnet is on that LAN too, and frames
   * cross the uplink at L2. Off: workloads reach the LAN through their gateway only. */
  extendToLan: z.boolean().default(false),
  /** Masquerading at the uplink: what the endpoints send off the node leaves with a NAT
   * address, the uplink's or the ones given (at most one per family). Absent or null: routed
   * (announced over BGP by a gateway). */
  nat: z
    .object({ addresses: z.array(z.string()).default([]) })
    .strict()
    .nullable()
    .optional(),
});
export type NetworkSpec = z.input<typeof NetworkSpecSchema>;

/** A validated network, normalised (canonical CIDRs and addresses). */
export interface Network {
  name: string;
  cidr: string;
  gateway: string;
  cidr6?: string;
  gateway6?: string;
  dhcpRange: { first: string; last: string };
  dnsZone: string;
  dnsForwarders: string[];
  mtu: number;
  defaultAction: "allow" | "deny";
  /** Seconds a DHCP lease (and a DHCPv6 binding) lasts before the client must renew. */
  dhcpLeaseTime: number;
  /** Extra classless static routes (option 121) as "DST/LEN via GATEWAY"; the default route
   * through the gateway always comes first. */
  dhcpRoutes: string[];
  /** User-set DHCP options, canonical "CODE=TYPE:VALUE" (see parseDhcpOption). */
  dhcpOptions: string[];
  /** Aggregate egress cap of the network's endpoints off the node; absent: none. */
  egress?: EgressCap;
  /** Extended onto the uplink's LAN (frames cross at L2, its addresses may come from there). */
  extendToLan: boolean;
  /** Masqueraded at the uplink (`addresses`: the NAT addresses given, canonical, at most one per
   * family; empty: the uplink's own). Absent: routed. */
  nat?: { addresses: string[] };
}

export const LEASE_TIME_RANGE = [10, 31_536_000] as const;
export const DEFAULT_LEASE_TIME = 3600;

/** Options the server writes itself: a user value for one would contradict the network. */
export const SERVER_OWNED_OPTIONS = new Set([
  0, 1, 3, 6, 12, 15, 26, 28, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82, 119, 121, 255,
]);
const OPTION_TYPES = ["ip", "ips", "text", "u8", "u16", "u32", "hex", "bool"] as const;

/** A user DHCP option "CODE=TYPE:VALUE" (types: ip, ips (comma list), text, u8, u16, u32,
 * hex, bool) as its code and wire bytes. Throws INVALID naming what is wrong. */
export function parseDhcpOption(text: string): { code: number; type: string; value: Uint8Array; canonical: string } {
  const m = text.match(/^(\d{1,3})=([a-z0-9]+):(.*)$/s);
  const usage = `DHCP option "${text}" is not CODE=TYPE:VALUE (TYPE one of ${OPTION_TYPES.join(", ")}; e.g. 42=ips:10.20.0.1,10.20.0.2 or 66=text:tftp.lab)`;
  if (!m) throw new StratumError("INVALID", usage);
  const code = Number(m[1]);
  const type = m[2] as string;
  const raw = m[3] as string;
  if (code < 1 || code > 254) throw new StratumError("INVALID", `DHCP option code ${code} is outside 1-254`);
  if (SERVER_OWNED_OPTIONS.has(code))
    throw new StratumError(
      "INVALID",
      `DHCP option ${code} is set by the server from the network (subnet, gateway, DNS, MTU, lease time, routes): change the network instead`,
    );
  const bad = (why: string) => new StratumError("INVALID", `DHCP option ${code}: ${why}`);
  let value: Uint8Array;
  const int = (bits: number) => {
    if (!/^\d+$/.test(raw) || BigInt(raw) >= 1n << BigInt(bits))
      throw bad(`"${raw}" is not an unsigned ${bits}-bit number`);
    const n = Number(raw);
    const b = new Uint8Array(bits / 8);
    for (let i = 0; i < b.length; i++) b[i] = (n / 2 ** (8 * (b.length - 1 - i))) & 0xff;
    return b;
  };
  const ip4 = (x: string) => {
    const a = parseIp(x);
    if (a.family !== 4) throw bad(`${x} is not an IPv4 address`);
    return Number(a.value);
  };
  switch (type) {
    case "ip":
    case "ips": {
      const list = raw.split(",").map((x) => x.trim());
      if (type === "ip" && list.length !== 1) throw bad("type ip takes one address (use ips for a list)");
      value = new Uint8Array(list.length * 4);
      list.forEach((x, i) => {
        const v = ip4(x);
        new DataView(value.buffer).setUint32(i * 4, v);
      });
      break;
    }
    case "text":
      value = new TextEncoder().encode(raw);
      break;
    case "u8":
      value = int(8);
      break;
    case "u16":
      value = int(16);
      break;
    case "u32":
      value = int(32);
      break;
    case "bool":
      if (raw !== "true" && raw !== "false") throw bad(`"${raw}" is not true or false`);
      value = Uint8Array.of(raw === "true" ? 1 : 0);
      break;
    case "hex":
      if (!/^([0-9a-f]{2})*$/i.test(raw.replace(/:/g, ""))) throw bad(`"${raw}" is not hex bytes`);
      value = Uint8Array.from(raw.replace(/:/g, "").match(/../g) ?? [], (h) => Number.parseInt(h, 16));
      break;
    default:
      throw new StratumError("INVALID", usage);
  }
  if (value.length === 0) throw bad("empty value");
  if (value.length > 1024) throw bad("value longer than 1024 bytes");
  const canonical = `${code}=${type}:${type === "hex" ? Buffer.from(value).toString("hex") : raw}`;
  return { code, type, value, canonical };
}

/** A classless static route "DST/LEN via GATEWAY" of network subnet `s`: the gateway must be on-link. */
function parseDhcpRoute(s: Subnet, text: string): string {
  const m = text.trim().match(/^(\S+)\s+via\s+(\S+)$/);
  if (!m)
    throw new StratumError(
      "INVALID",
      `DHCP route "${text}" is not "DST/LEN via GATEWAY" (e.g. "192.168.50.0/24 via 10.20.0.254")`,
    );
  const dst = parseSubnet(m[1] as string);
  const via = parseIp(m[2] as string);
  if (dst.family !== 4 || via.family !== 4) throw new StratumError("INVALID", `DHCP route "${text}" must be IPv4`);
  if (!contains(s, via))
    throw new StratumError("INVALID", `DHCP route "${text}": ${m[2]} is not inside ${formatSubnet(s)}`);
  if (dst.prefixLen === 0)
    throw new StratumError("INVALID", `DHCP route "${text}": the default route is always the network's gateway`);
  return `${formatSubnet(dst)} via ${formatIp(via)}`;
}

function checkGateway(s: Subnet, text: string, what: string): string {
  const gw = parseIp(text);
  const cidr = formatSubnet(s);
  if (gw.family !== s.family)
    throw new StratumError("INVALID", `${what} ${text} is not an IPv${s.family} address like ${cidr}`);
  if (!contains(s, gw)) throw new StratumError("INVALID", `${what} ${text} is outside ${cidr}`);
  const r = hostRange(s);
  if (gw.value < r.first || gw.value > r.last)
    throw new StratumError(
      "INVALID",
      `${what} ${text} is the ${gw.value === s.network ? "network" : "broadcast"} address of ${cidr}`,
    );
  return formatIp(gw);
}

/** Address blocks that are never a network's subnet: the kernel and every workload give them
 * another meaning (a loopback gateway would answer DNS on 127.0.0.1 of the node itself). A
 * subnet that overlaps one is refused, and the reason named. */
export const RESERVED_RANGES: ReadonlyArray<{ cidr: string; why: string }> = [
  { cidr: "0.0.0.0/8", why: "unspecified ('this network', RFC 1122)" },
  { cidr: "127.0.0.0/8", why: "loopback" },
  { cidr: "169.254.0.0/16", why: "link-local" },
  { cidr: "224.0.0.0/4", why: "multicast" },
  { cidr: "240.0.0.0/4", why: "reserved (class E and the limited broadcast 255.255.255.255)" },
  { cidr: "::/128", why: "the unspecified address" },
  { cidr: "::1/128", why: "loopback" },
  { cidr: "::ffff:0:0/96", why: "IPv4-mapped" },
  { cidr: "fe80::/10", why: "link-local" },
  { cidr: "ff00::/8", why: "multicast" },
];
const RESERVED = RESERVED_RANGES.map((r) => ({ ...r, subnet: parseSubnet(r.cidr) }));

/** Refuses a subnet that overlaps a reserved block, naming the block and why. */
export function checkNotReserved(s: Subnet, flag: "--cidr" | "--cidr6"): void {
  const r = RESERVED.find((x) => overlaps(s, x.subnet));
  if (r)
    throw new StratumError(
      "INVALID",
      `${flag} ${formatSubnet(s)} overlaps ${r.cidr} (${r.why}): a network's subnet must be ordinary unicast space, e.g. 10.20.0.0/24 or fd20::/64`,
    );
}

const DNS_ZONE_RE = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Validates a declaration against the rules and the networks that already exist. */
export function validateNetwork(input: NetworkSpec, existing: Network[] = []): Network {
  const parsed = NetworkSpecSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StratumError("INVALID", `network ${issue?.path.join(".") || "spec"}: ${issue?.message ?? "invalid"}`);
  }
  const spec = parsed.data;
  const name = checkName("network", spec.name);
  if (existing.some((n) => n.name === name)) throw new StratumError("CONFLICT", `network ${name} already exists`);

  const subnet = parseSubnet(spec.cidr);
  if (subnet.family !== 4) throw new StratumError("INVALID", `--cidr ${spec.cidr} must be IPv4 (use --cidr6 for IPv6)`);
  if (subnet.prefixLen < MIN_PREFIX_V4)
    throw new StratumError(
      "INVALID",
      `${spec.cidr} is too large: every address becomes an endpoint profile, at most a /${MIN_PREFIX_V4} (65,534 endpoints)`,
    );
  if (subnet.prefixLen > MAX_PREFIX_V4)
    throw new StratumError(
      "INVALID",
      `${spec.cidr} is too small to hold a gateway and endpoints (at most /${MAX_PREFIX_V4})`,
    );
  checkNotReserved(subnet, "--cidr");
  const cidr = formatSubnet(subnet);
  const gateway = checkGateway(subnet, spec.gateway, "gateway");

  let cidr6: string | undefined;
  let gateway6: string | undefined;
  let subnet6: Subnet | undefined;
  if (spec.cidr6 !== undefined || spec.gateway6 !== undefined) {
    if (spec.cidr6 === undefined || spec.gateway6 === undefined)
      throw new StratumError("INVALID", "--cidr6 and --gateway6 go together");
    subnet6 = parseSubnet(spec.cidr6);
    if (subnet6.family !== 6) throw new StratumError("INVALID", `--cidr6 ${spec.cidr6} is not an IPv6 CIDR`);
    checkNotReserved(subnet6, "--cidr6");
    if (subnet6.prefixLen > 64)
      throw new StratumError(
        "INVALID",
        `${spec.cidr6} is too small: IPv6 subnets are /64 or larger (endpoint addresses use the EUI-64 interface id of their MAC, as SLAAC does)`,
      );
    cidr6 = formatSubnet(subnet6);
    gateway6 = checkGateway(subnet6, spec.gateway6, "IPv6 gateway");
  }

  for (const other of existing) {
    if (overlaps(subnet, parseSubnet(other.cidr)))
      throw new StratumError("INVALID", `${cidr} overlaps network ${other.name} (${other.cidr})`);
    if (subnet6 && other.cidr6 && overlaps(subnet6, parseSubnet(other.cidr6)))
      throw new StratumError("INVALID", `${cidr6} overlaps network ${other.name} (${other.cidr6})`);
  }

  const dhcpRange = spec.dhcpRange
    ? parseDhcpRange(subnet, spec.dhcpRange)
    : defaultDhcpRange(subnet, parseIp(gateway).value);
  const dnsZone = (spec.dnsZone ?? `${name}.internal`).toLowerCase().replace(/\.$/, "");
  if (!DNS_ZONE_RE.test(dnsZone)) throw new StratumError("INVALID", `invalid DNS zone "${spec.dnsZone}"`);
  const dnsForwarders = spec.dnsForwarders.map((f) => formatIp(parseIp(f)));
  const mtu = spec.mtu ?? 1500;
  if (mtu < MTU_RANGE[0] || mtu > MTU_RANGE[1])
    throw new StratumError("INVALID", `MTU ${mtu} is outside ${MTU_RANGE[0]}-${MTU_RANGE[1]}`);
  const dhcpLeaseTime = spec.dhcpLeaseTime ?? DEFAULT_LEASE_TIME;
  if (dhcpLeaseTime < LEASE_TIME_RANGE[0] || dhcpLeaseTime > LEASE_TIME_RANGE[1])
    throw new StratumError(
      "INVALID",
      `DHCP lease time ${dhcpLeaseTime} s is outside ${LEASE_TIME_RANGE[0]}-${LEASE_TIME_RANGE[1]} s`,
    );
  const dhcpRoutes = [...new Set((spec.dhcpRoutes ?? []).map((r) => parseDhcpRoute(subnet, r)))];
  const opts = (spec.dhcpOptions ?? []).map(parseDhcpOption);
  const seen = new Set<number>();
  for (const o of opts) {
    if (seen.has(o.code)) throw new StratumError("INVALID", `DHCP option ${o.code} is given twice`);
    seen.add(o.code);
  }
  return {
    name,
    cidr,
    gateway,
    cidr6,
    gateway6,
    dhcpRange,
    dnsZone,
    dnsForwarders,
    mtu,
    defaultAction: spec.defaultAction,
    dhcpLeaseTime,
    dhcpRoutes,
    dhcpOptions: opts.map((o) => o.canonical),
    // Present even when there is none: a network set over a stored one must clear the cap.
    egress: spec.egress ? validateCap(spec.egress) : undefined,
    extendToLan: spec.extendToLan === true,
    nat: spec.nat
      ? { addresses: checkNatAddresses(spec.nat.addresses, [...existing, { name, cidr, cidr6 }]) }
      : undefined,
  };
}

/** NAT addresses: one per family at most, ordinary unicast, outside every network's subnets
 * (a reply to one must come to the uplink, not to an endpoint). Canonical. */
export function checkNatAddresses(
  addrs: readonly string[],
  networks: ReadonlyArray<Pick<Network, "name" | "cidr" | "cidr6">>,
): string[] {
  const out: string[] = [];
  const seen = new Set<number>();
  for (const a of addrs) {
    const ip = parseIp(a);
    const host = parseSubnet(`${formatIp(ip)}/${ip.family === 4 ? 32 : 128}`);
    if (seen.has(ip.family))
      throw new StratumError("INVALID", `--nat-address: one IPv${ip.family} address at most (${addrs.join(", ")})`);
    seen.add(ip.family);
    const r = RESERVED.find((x) => overlaps(host, x.subnet));
    if (r)
      throw new StratumError(
        "INVALID",
        `--nat-address ${a} is in ${r.cidr} (${r.why}): not an address to masquerade to`,
      );
    for (const n of networks)
      for (const c of [n.cidr, n.cidr6])
        if (c && overlaps(host, parseSubnet(c)))
          throw new StratumError(
            "INVALID",
            `--nat-address ${a} is inside network ${n.name} (${c}): the replies would go to an endpoint, not the uplink`,
          );
    out.push(formatIp(ip));
  }
  return out;
}

/** Every usable address, less the gateway when it sits at either end (the usual .1). */
function defaultDhcpRange(s: Subnet, gw: bigint): { first: string; last: string } {
  const r = hostRange(s);
  const first = gw === r.first ? r.first + 1n : r.first;
  const last = gw === r.last ? r.last - 1n : r.last;
  return { first: formatIp({ family: 4, value: first }), last: formatIp({ family: 4, value: last }) };
}

function parseDhcpRange(s: Subnet, text: string): { first: string; last: string } {
  const m = text.split("-");
  if (m.length !== 2) throw new StratumError("INVALID", `DHCP range "${text}" is not FIRST-LAST`);
  const [a, b] = m.map((x) => parseIp(x)) as [ReturnType<typeof parseIp>, ReturnType<typeof parseIp>];
  const r = hostRange(s);
  for (const ip of [a, b])
    if (ip.family !== 4 || ip.value < r.first || ip.value > r.last)
      throw new StratumError("INVALID", `DHCP range ${text} is outside the usable addresses of ${formatSubnet(s)}`);
  if (a.value > b.value) throw new StratumError("INVALID", `DHCP range ${text} ends before it starts`);
  return { first: formatIp(a), last: formatIp(b) };
}

/** The VNI of a network: from its cluster-wide id, so every node agrees without asking (the
 * datapath's STM_VNI_BASE is the same number). */
export const VNI_BASE = 0x10000;
export const vniOf = (id: number) => VNI_BASE + id;

// ---- endpoint profiles ------------------------------------------------------------------------

/** Number of endpoint profiles of an IPv4 network: every usable host address. */
export function profileCount(cidr: string): number {
  return Number(usableHosts(parseSubnet(cidr)));
}

/** The deterministic, locally administered MAC of host `index` (0-based) in network `netId`:
 * 02:NN:NN:HH:HH:HH, unique across networks as long as network ids are. */
export function profileMac(netId: number, index: number): string {
  if (!Number.isInteger(netId) || netId < 1 || netId > 0xffff)
    throw new StratumError("INTERNAL", `network id ${netId} out of range`);
  if (!Number.isInteger(index) || index < 0 || index > 0xffffff)
    throw new StratumError("INTERNAL", `host index ${index} out of range`);
  const b = [0x02, netId >> 8, netId & 0xff, index >> 16, (index >> 8) & 0xff, index & 0xff];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Host index of `ip` in `cidr` (0 = first usable address), or an INVALID error when it is not usable there. */
export function hostIndex(cidr: string, ip: string): number {
  const s = parseSubnet(cidr);
  const a = parseIp(ip);
  const r = hostRange(s);
  if (a.family !== s.family || a.value < r.first || a.value > r.last)
    throw new StratumError("INVALID", `${ip} is not a usable address of ${cidr}`);
  return Number(a.value - r.first);
}

export function hostAddress(cidr: string, index: number): string {
  const s = parseSubnet(cidr);
  return formatIp({ family: s.family as Family, value: hostRange(s).first + BigInt(index) });
}

/** EUI-64 interface identifier of a MAC (RFC 4291 appendix A): the 8 low bytes of its
 * link-local and SLAAC addresses. */
export function eui64(mac: string): bigint {
  const b = mac.split(":").map((x) => Number.parseInt(x, 16));
  const id = [(b[0] as number) ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]] as number[];
  return id.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
}

/** The link-local address a workload derives from its MAC (fe80::/64 + EUI-64). */
export function linkLocal(mac: string): string {
  return formatIp({ family: 6, value: (0xfe80n << 112n) | eui64(mac) });
}

/** The IPv6 address of a profile: the first /64 of the network's IPv6 subnet plus the EUI-64
 * of the profile MAC, the same address SLAAC gives a workload with that MAC. */
export function profileIp6(cidr6: string, mac: string): string {
  const s = parseSubnet(cidr6);
  const prefix = (s.network >> 64n) << 64n;
  return formatIp({ family: 6, value: prefix | eui64(mac) });
}
