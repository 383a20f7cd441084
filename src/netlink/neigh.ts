/** Neighbour entries (ARP/NDP) and bridge/VXLAN forwarding database (FDB) entries over
 * rtnetlink. FDB entries are neighbours of family AF_BRIDGE: on a bridge port with
 * NTF_MASTER (the bridge's table), on a VXLAN device with NTF_SELF (its remote VTEPs). */

import { ERRNO, StratumError } from "../errors";
import { bytesToIp, bytesToMac, decodeNd, encodeNd, familyOf, ipToBytes, MessageBuilder, macToBytes } from "./codec";
import { NL } from "./constants";
import { type LinkRef, linkIndex } from "./link";
import { type Rtnl, rtnl } from "./rtnl";

export interface Neighbour {
  family: number;
  ifindex: number;
  ip?: string;
  mac?: string;
  state: number;
  flags: number;
  /** Bridge the entry lives in (FDB entries). */
  master?: number;
  vni?: number;
}

export function decodeNeighbour(payload: Buffer): Neighbour {
  const { hdr, attrs } = decodeNd(payload);
  const dst = attrs.get(NL.NDA_DST);
  const ll = attrs.get(NL.NDA_LLADDR);
  return {
    family: hdr.family,
    ifindex: hdr.ifindex,
    ip: dst ? bytesToIp(dst) : undefined,
    mac: ll?.length === 6 ? bytesToMac(ll) : undefined,
    state: hdr.state,
    flags: hdr.flags,
    master: attrs.u32(NL.NDA_MASTER),
    vni: attrs.u32(NL.NDA_VNI),
  };
}

// ---- IP neighbours ----------------------------------------------------------------------------

/** A neighbour entry ip → mac on `dev` (idempotent): permanent, or in `state` (a NUD_* value,
 * e.g. NUD_STALE: used at once, then confirmed by the kernel as usual). */
export function setNeighbour(
  dev: LinkRef,
  ip: string,
  mac: string,
  nl: Rtnl = rtnl(),
  state: number = NL.NUD_PERMANENT,
): void {
  const b = new MessageBuilder(
    NL.RTM_NEWNEIGH,
    NL.NLM_F_CREATE | NL.NLM_F_REPLACE,
    encodeNd({ family: familyOf(ip), ifindex: linkIndex(dev, nl), state, flags: 0, type: 0 }),
  );
  b.attr(NL.NDA_DST, ipToBytes(ip));
  b.attr(NL.NDA_LLADDR, macToBytes(mac));
  nl.do(b, `set neighbour ${ip} lladdr ${mac} on ${dev}`);
}

export function deleteNeighbour(dev: LinkRef, ip: string, nl: Rtnl = rtnl()): void {
  const b = new MessageBuilder(
    NL.RTM_DELNEIGH,
    0,
    encodeNd({ family: familyOf(ip), ifindex: linkIndex(dev, nl), state: 0, flags: 0, type: 0 }),
  );
  b.attr(NL.NDA_DST, ipToBytes(ip));
  nl.do(b, `delete neighbour ${ip} on ${dev}`);
}

export function listNeighbours(o: { family?: number; dev?: LinkRef } = {}, nl: Rtnl = rtnl()): Neighbour[] {
  const index = o.dev === undefined ? 0 : linkIndex(o.dev, nl);
  const fam = o.family ?? NL.AF_UNSPEC;
  const b = new MessageBuilder(NL.RTM_GETNEIGH, 0, encodeNd({ family: fam, ifindex: 0, state: 0, flags: 0, type: 0 }));
  return nl
    .dump(b, "list neighbours")
    .map((m) => decodeNeighbour(m.payload))
    .filter((n) => n.family !== NL.AF_BRIDGE && (index === 0 || n.ifindex === index));
}

// ---- bridge / VXLAN FDB ---------------------------------------------------------------------

export interface FdbSpec {
  /** Bridge port (NTF_MASTER entry) or VXLAN device (NTF_SELF entry). */
  dev: LinkRef;
  mac: string;
  /** VXLAN only: the remote VTEP address. */
  dst?: string;
  vni?: number;
  /** "master" (bridge table, default) or "self" (the device's own table, e.g. VXLAN). */
  table?: "master" | "self";
}

function fdbMsg(type: number, flags: number, f: FdbSpec, nl: Rtnl): MessageBuilder {
  const self = (f.table ?? "master") === "self";
  const b = new MessageBuilder(
    type,
    flags,
    encodeNd({
      family: NL.AF_BRIDGE,
      ifindex: linkIndex(f.dev, nl),
      // Static entry: NUD_NOARP ("static"), never aged out, never learned over.
      state: type === NL.RTM_DELNEIGH ? 0 : NL.NUD_NOARP | (self ? NL.NUD_PERMANENT : 0),
      flags: self ? NL.NTF_SELF : NL.NTF_MASTER,
      type: 0,
    }),
  );
  b.attr(NL.NDA_LLADDR, macToBytes(f.mac));
  if (f.dst) b.attr(NL.NDA_DST, ipToBytes(f.dst));
  if (f.vni !== undefined) b.u32(NL.NDA_VNI, f.vni);
  return b;
}

const fdbLabel = (f: FdbSpec): string => `FDB entry ${f.mac} on ${f.dev}${f.dst ? ` dst ${f.dst}` : ""}`;

/** Adds (or replaces) a static FDB entry; with `append`, a second VTEP for the same MAC (flood list). */
export function addFdb(f: FdbSpec, o: { append?: boolean } = {}, nl: Rtnl = rtnl()): void {
  const flags = NL.NLM_F_CREATE | (o.append ? NL.NLM_F_APPEND : NL.NLM_F_REPLACE);
  nl.do(fdbMsg(NL.RTM_NEWNEIGH, flags, f, nl), `add ${fdbLabel(f)}`);
}

export function deleteFdb(f: FdbSpec, nl: Rtnl = rtnl()): void {
  nl.do(fdbMsg(NL.RTM_DELNEIGH, 0, f, nl), `delete ${fdbLabel(f)}`);
}

/** Deletes an FDB entry; an entry or device gone already is not an error (false). */
export function deleteFdbIfExists(f: FdbSpec, nl: Rtnl = rtnl()): boolean {
  try {
    deleteFdb(f, nl);
    return true;
  } catch (e) {
    if (e instanceof StratumError && (e.errno === ERRNO.ENOENT || e.errno === ERRNO.ENODEV)) return false;
    throw e;
  }
}

/** FDB entries; `bridge` limits to members of that bridge, `dev` to one port or VXLAN device
 * (filtered here: the request names them too, but a socket without strict checking has the
 * kernel dump everything regardless). `bridgeOnly`:
 * the bridges' entries alone, not each device's own address lists (NTF_SELF: a few multicast
 * addresses a device, most of a dump on a node with thousands of ports), skipped undecoded. */
export function listFdb(
  o: { bridge?: LinkRef; dev?: LinkRef; bridgeOnly?: boolean } = {},
  nl: Rtnl = rtnl(),
): Neighbour[] {
  const br = o.bridge === undefined ? 0 : linkIndex(o.bridge, nl);
  const dev = o.dev === undefined ? 0 : linkIndex(o.dev, nl);
  const b = new MessageBuilder(
    NL.RTM_GETNEIGH,
    0,
    encodeNd({ family: NL.AF_BRIDGE, ifindex: dev, state: 0, flags: 0, type: 0 }),
  );
  if (br) b.u32(NL.NDA_MASTER, br);
  if (dev) b.u32(NL.NDA_IFINDEX, dev);
  const out: Neighbour[] = [];
  for (const m of nl.dump(b, "list FDB")) {
    // struct ndmsg: family, pad, pad (2), ifindex (4), state (2), flags (1), type (1).
    if (o.bridgeOnly && (m.payload[10] as number) & NL.NTF_SELF) continue;
    const n = decodeNeighbour(m.payload);
    if ((br === 0 || n.master === br) && (dev === 0 || n.ifindex === dev)) out.push(n);
  }
  return out;
}
