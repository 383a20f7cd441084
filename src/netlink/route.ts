/** Routes over rtnetlink (main table unless told otherwise). */
import { bytesToIp, decodeRt, encodeRt, familyOf, ipToBytes, MessageBuilder, parseCidr } from "./codec";
import { NL } from "./constants";
import { type LinkRef, linkIndex } from "./link";
import { type Rtnl, rtnl } from "./rtnl";

/** Protocol number marking routes Stratum installed (rtnetlink "proto"; values > 4 are free for daemons). */
export const RTPROT_STRATUM = 0xc5;

export interface Route {
  family: number;
  /** "default" or a CIDR. */
  dst: string;
  gateway?: string;
  oif?: number;
  prefsrc?: string;
  priority?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
}

export function decodeRoute(payload: Buffer): Route {
  const { hdr, attrs } = decodeRt(payload);
  const dst = attrs.get(NL.RTA_DST);
  const gw = attrs.get(NL.RTA_GATEWAY);
  const src = attrs.get(NL.RTA_PREFSRC);
  return {
    family: hdr.family,
    dst: dst ? `${bytesToIp(dst)}/${hdr.dstLen}` : "default",
    gateway: gw ? bytesToIp(gw) : undefined,
    oif: attrs.u32(NL.RTA_OIF),
    prefsrc: src ? bytesToIp(src) : undefined,
    priority: attrs.u32(NL.RTA_PRIORITY),
    table: attrs.u32(NL.RTA_TABLE) ?? hdr.table,
    protocol: hdr.protocol,
    scope: hdr.scope,
    type: hdr.type,
  };
}

export interface RouteSpec {
  /** "default", "default6" or a CIDR. */
  dst: string;
  gateway?: string;
  dev?: LinkRef;
  prefsrc?: string;
  metric?: number;
  table?: number;
  protocol?: number;
  type?: number;
}

function routeMsg(type: number, flags: number, r: RouteSpec, nl: Rtnl): MessageBuilder {
  const isDefault = r.dst === "default" || r.dst === "default6";
  const family = isDefault
    ? r.dst === "default6" || (r.gateway && familyOf(r.gateway) === NL.AF_INET6)
      ? NL.AF_INET6
      : NL.AF_INET
    : parseCidr(r.dst).family;
  const dst = isDefault ? null : parseCidr(r.dst);
  const table = r.table ?? NL.RT_TABLE_MAIN;
  const scope =
    r.gateway || type === NL.RTM_DELROUTE
      ? NL.RT_SCOPE_UNIVERSE
      : r.dev !== undefined
        ? NL.RT_SCOPE_LINK
        : NL.RT_SCOPE_UNIVERSE;
  const b = new MessageBuilder(
    type,
    flags,
    encodeRt({
      family,
      dstLen: dst?.prefixLen ?? 0,
      srcLen: 0,
      tos: 0,
      table: table < 256 ? table : 0, // RT_TABLE_UNSPEC: the table travels in RTA_TABLE
      protocol: type === NL.RTM_DELROUTE ? 0 : (r.protocol ?? RTPROT_STRATUM),
      scope,
      type: r.type ?? NL.RTN_UNICAST,
      flags: 0,
    }),
  );
  if (dst) b.attr(NL.RTA_DST, ipToBytes(dst.ip));
  if (r.gateway) b.attr(NL.RTA_GATEWAY, ipToBytes(r.gateway));
  if (r.dev !== undefined) b.u32(NL.RTA_OIF, linkIndex(r.dev, nl));
  if (r.prefsrc) b.attr(NL.RTA_PREFSRC, ipToBytes(r.prefsrc));
  if (r.metric !== undefined) b.u32(NL.RTA_PRIORITY, r.metric);
  b.u32(NL.RTA_TABLE, table);
  return b;
}

const label = (r: RouteSpec): string =>
  `route ${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${r.dev !== undefined ? ` dev ${r.dev}` : ""}`;

/** Adds a route; `replace` makes it idempotent. */
export function addRoute(r: RouteSpec, o: { replace?: boolean } = {}, nl: Rtnl = rtnl()): void {
  const flags = NL.NLM_F_CREATE | (o.replace ? NL.NLM_F_REPLACE : NL.NLM_F_EXCL);
  nl.do(routeMsg(NL.RTM_NEWROUTE, flags, r, nl), `add ${label(r)}`);
}

export function deleteRoute(r: RouteSpec, nl: Rtnl = rtnl()): void {
  nl.do(routeMsg(NL.RTM_DELROUTE, 0, r, nl), `delete ${label(r)}`);
}

export function listRoutes(o: { family?: number; table?: number } = {}, nl: Rtnl = rtnl()): Route[] {
  const b = new MessageBuilder(
    NL.RTM_GETROUTE,
    0,
    encodeRt({
      family: o.family ?? NL.AF_UNSPEC,
      dstLen: 0,
      srcLen: 0,
      tos: 0,
      table: 0,
      protocol: 0,
      scope: 0,
      type: 0,
      flags: 0,
    }),
  );
  const table = o.table ?? NL.RT_TABLE_MAIN;
  return nl
    .dump(b, "list routes")
    .map((m) => decodeRoute(m.payload))
    .filter((r) => r.table === table);
}
