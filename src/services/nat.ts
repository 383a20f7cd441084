/** Masquerading's kernel state, from the store: each masqueraded network's NAT addresses (the
 * ones it names, else the uplink's: the node's own addresses on the user bridge), the set of
 * them the uplink filter leaves to the translation, and the NAT port range, which lies outside
 * the kernel's ephemeral range so the node's own connections never take a translated flow's
 * port (docs/gateway.md). Written whole and compared first: a second run changes nothing. */
import { readFileSync } from "node:fs";
import type { NatNetConfig } from "../datapath/port-maps";
import { StratumError } from "../errors";
import { contains, parseIp, parseSubnet } from "../model/ip";
import type { Network } from "../model/network";
import { USER_BRIDGE } from "../model/topology";
import { getLink, listAddresses, STRATUM_ADDR_PROTO, VIP_ADDR_PROTO } from "../netlink";
import type { StoredNetwork } from "../store/store";
import type { ServiceContext } from "./service-context";

export interface PortRange {
  lo: number;
  hi: number;
}

const EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range";
/** RT_SCOPE_UNIVERSE: an address the node may be reached at from elsewhere. */
const SCOPE_UNIVERSE = 0;

/** The kernel's ephemeral port range (net.ipv4.ip_local_port_range). */
export function ephemeralPorts(path = EPHEMERAL): PortRange {
  const [lo, hi] = readFileSync(path, "utf8").trim().split(/\s+/).map(Number);
  return { lo: lo ?? 32768, hi: hi ?? 60999 };
}

/** "LO-HI" as a range of at least 16 ports from 1024 up that misses the ephemeral range; without
 * one, the larger side of 1024-65535 the ephemeral range leaves (by default 1024-32767). */
export function natPortRange(text: string | undefined, eph: PortRange = ephemeralPorts()): PortRange {
  if (text === undefined) {
    const below = { lo: 1024, hi: eph.lo - 1 };
    const above = { lo: eph.hi + 1, hi: 65535 };
    const r = below.hi - below.lo >= above.hi - above.lo ? below : above;
    if (r.hi - r.lo + 1 < 16)
      throw new StratumError(
        "INVALID",
        `the kernel's ephemeral ports ${eph.lo}-${eph.hi} (net.ipv4.ip_local_port_range) leave no room for NAT ports: give --nat-ports LO-HI outside them, or narrow that range`,
      );
    return r;
  }
  const m = text.trim().match(/^(\d{1,5})-(\d{1,5})$/);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1024 || hi > 65535 || hi < lo)
    throw new StratumError("INVALID", `--nat-ports ${text}: give LO-HI, 1024 <= LO <= HI <= 65535`);
  if (hi - lo + 1 < 16) throw new StratumError("INVALID", `--nat-ports ${text}: at least 16 ports`);
  if (lo <= eph.hi && hi >= eph.lo)
    throw new StratumError(
      "INVALID",
      `--nat-ports ${text} overlaps the kernel's ephemeral ports ${eph.lo}-${eph.hi} (net.ipv4.ip_local_port_range): the node's own connections could take a port a translated flow has`,
    );
  return { lo, hi };
}

/** The masquerading address of a network that names none: a VIP of this node's gateway groups
 * (so its flows can move with the VIP, docs/gateway.md#masquerading-in-a-group), else the
 * node's addresses on the user bridge that are the uplink's (not a gateway's, not inside a
 * network): the first IPv4 and the first global IPv6. */
export function uplinkAddresses(ctx: ServiceContext, nets: readonly Network[]): { v4?: string; v6?: string } {
  const vips = ctx.groupVips?.() ?? {};
  const br = getLink(USER_BRIDGE, ctx.nl);
  if (!br) return vips;
  const subnets = nets.flatMap((n) => [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]).map((c) => parseSubnet(c));
  const out: { v4?: string; v6?: string } = {};
  for (const a of listAddresses({ dev: br.index }, ctx.nl)) {
    if (a.proto === STRATUM_ADDR_PROTO || a.proto === VIP_ADDR_PROTO || a.scope !== SCOPE_UNIVERSE) continue;
    const ip = parseIp(a.ip);
    if (subnets.some((s) => s.family === ip.family && contains(s, ip))) continue;
    if (ip.family === 4) out.v4 ??= a.ip;
    else out.v6 ??= a.ip;
  }
  return { v4: vips.v4 ?? out.v4, v6: vips.v6 ?? out.v6 };
}

/** What a masqueraded network translates to: the address it names for a family, else the
 * uplink's; a family with neither is not translated (its packets are dropped, never leaked). */
export function natAddressesOf(n: Network, up: { v4?: string; v6?: string }): NatNetConfig {
  const given = n.nat?.addresses ?? [];
  const v4 = given.find((a) => !a.includes(":")) ?? up.v4;
  const v6 = n.cidr6 ? (given.find((a) => a.includes(":")) ?? up.v6) : undefined;
  return { ...(v4 ? { addr4: v4 } : {}), ...(v6 ? { addr6: v6 } : {}) };
}

/** Masquerading's maps made to match the store. */
export function applyNat(ctx: ServiceContext, nets: readonly StoredNetwork[]): void {
  const up = uplinkAddresses(ctx, nets);
  const want = new Map<number, NatNetConfig>();
  for (const n of nets) if (n.nat) want.set(n.id, natAddressesOf(n, up));
  // Off first where it goes: a network no longer masqueraded stops being translated before its
  // address may stop being a NAT address.
  for (const id of ctx.dp.natNets().keys()) if (!want.has(id)) ctx.dp.deleteNatNet(id);
  ctx.dp.setNatAddrs(new Set([...want.values()].flatMap((c) => [c.addr4, c.addr6].filter((a) => a !== undefined))));
  for (const [id, c] of want) ctx.dp.setNatNet(id, c);
  ctx.dp.setNatCfg({ ...ctx.natPorts, on: want.size > 0 });
}
