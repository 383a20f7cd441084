/** Links over rtnetlink: create (bridge, veth pair with the peer in another namespace,
 * tap, macvtap, vxlan), delete, list, and change (up/down, master, MAC, MTU,
 * namespace, bridge-port flags). Names or indexes are accepted wherever a link is named. */
import { ERRNO, StratumError } from "../errors";
import { closeFd, createPersistentTap, openReadOnly } from "../sys/os";
import {
  type Attrs,
  bytesToIp,
  bytesToMac,
  decodeIfInfo,
  encodeIfInfo,
  ipToBytes,
  MessageBuilder,
  macToBytes,
} from "./codec";
import { IFF_LOWER_UP, NL } from "./constants";
import { netnsPath, type Rtnl, rtnl } from "./rtnl";

export type LinkRef = string | number;

export interface BridgePortInfo {
  state?: number;
  learning?: boolean;
  unicastFlood?: boolean;
  mcastFlood?: boolean;
  bcastFlood?: boolean;
  neighSuppress?: boolean;
  isolated?: boolean;
  /** Hairpin (reflective relay): a frame may leave through the port it came in on. */
  hairpin?: boolean;
}

export interface VxlanInfo {
  vni: number;
  port?: number;
  local?: string;
  link?: number;
  learning?: boolean;
  gbp: boolean;
  ttl?: number;
  /** External (collect_md) mode. */
  external?: boolean;
}

export interface Link {
  /** AF_UNSPEC for a device, AF_BRIDGE for a bridge's notice about one of its ports. */
  family: number;
  index: number;
  name: string;
  kind?: string;
  mtu: number;
  mac?: string;
  flags: number;
  up: boolean;
  lowerUp: boolean;
  operstate?: number;
  master?: number;
  /** IFLA_LINK: the peer (veth) or parent (macvtap) index, possibly in another namespace. */
  link?: number;
  linkNetnsId?: number;
  slaveKind?: string;
  bridgePort?: BridgePortInfo;
  vxlan?: VxlanInfo;
  macvlanMode?: number;
  /** A tun/tap device: whether it is a tap (IFF_TAP) and multi-queue. */
  tun?: { tap: boolean; multiQueue: boolean };
}

const OPERSTATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];
export const operstateName = (s?: number): string => (s === undefined ? "unknown" : (OPERSTATES[s] ?? `state${s}`));

function bool(a: Attrs, t: number): boolean | undefined {
  const v = a.u8(t);
  return v === undefined ? undefined : v !== 0;
}

export function decodeLink(payload: Buffer): Link {
  const { hdr, attrs } = decodeIfInfo(payload);
  const info = attrs.nested(NL.IFLA_LINKINFO);
  const kind = info?.str(NL.IFLA_INFO_KIND);
  const slaveKind = info?.str(NL.IFLA_INFO_SLAVE_KIND);
  const link: Link = {
    family: hdr.family,
    index: hdr.index,
    name: attrs.str(NL.IFLA_IFNAME) ?? "",
    kind,
    mtu: attrs.u32(NL.IFLA_MTU) ?? 0,
    mac: attrs.get(NL.IFLA_ADDRESS)?.length === 6 ? bytesToMac(attrs.get(NL.IFLA_ADDRESS) as Buffer) : undefined,
    flags: hdr.flags,
    up: (hdr.flags & NL.IFF_UP) !== 0,
    lowerUp: (hdr.flags & IFF_LOWER_UP) !== 0,
    operstate: attrs.u8(NL.IFLA_OPERSTATE),
    master: attrs.u32(NL.IFLA_MASTER),
    link: attrs.u32(NL.IFLA_LINK),
    linkNetnsId: attrs.i32(NL.IFLA_LINK_NETNSID),
    slaveKind,
  };
  const data = info?.nested(NL.IFLA_INFO_DATA);
  if (kind === "vxlan" && data) {
    const local = data.get(NL.IFLA_VXLAN_LOCAL) ?? data.get(NL.IFLA_VXLAN_LOCAL6);
    link.vxlan = {
      vni: data.u32(NL.IFLA_VXLAN_ID) ?? 0,
      port: data.u16be(NL.IFLA_VXLAN_PORT),
      local: local ? bytesToIp(local) : undefined,
      link: data.u32(NL.IFLA_VXLAN_LINK),
      learning: bool(data, NL.IFLA_VXLAN_LEARNING),
      gbp: data.has(NL.IFLA_VXLAN_GBP),
      external: bool(data, NL.IFLA_VXLAN_COLLECT_METADATA),
      ttl: data.u8(NL.IFLA_VXLAN_TTL),
    };
  }
  if ((kind === "macvtap" || kind === "macvlan") && data) link.macvlanMode = data.u32(NL.IFLA_MACVLAN_MODE);
  if (kind === "tun" && data)
    link.tun = { tap: data.u8(NL.IFLA_TUN_TYPE) === 2, multiQueue: data.u8(NL.IFLA_TUN_MULTI_QUEUE) === 1 };
  // A bridge's own notices about its ports (family AF_BRIDGE) carry the port's flags in
  // IFLA_PROTINFO; other families' IFLA_PROTINFO is theirs (IPv6's), not a bridge port's.
  const slave = hdr.family === NL.AF_BRIDGE ? attrs.nested(NL.IFLA_PROTINFO) : info?.nested(NL.IFLA_INFO_SLAVE_DATA);
  if ((slaveKind === "bridge" || hdr.family === NL.AF_BRIDGE) && slave) {
    link.bridgePort = {
      state: slave.u8(NL.IFLA_BRPORT_STATE),
      learning: bool(slave, NL.IFLA_BRPORT_LEARNING),
      unicastFlood: bool(slave, NL.IFLA_BRPORT_UNICAST_FLOOD),
      mcastFlood: bool(slave, NL.IFLA_BRPORT_MCAST_FLOOD),
      bcastFlood: bool(slave, NL.IFLA_BRPORT_BCAST_FLOOD),
      neighSuppress: bool(slave, NL.IFLA_BRPORT_NEIGH_SUPPRESS),
      isolated: bool(slave, NL.IFLA_BRPORT_ISOLATED),
      hairpin: bool(slave, NL.IFLA_BRPORT_MODE),
    };
  }
  return link;
}

function linkMsg(type: number, flags: number, ref?: LinkRef, family = NL.AF_UNSPEC): MessageBuilder {
  const index = typeof ref === "number" ? ref : 0;
  const b = new MessageBuilder(type, flags, encodeIfInfo({ family, index }));
  if (typeof ref === "string") b.str(NL.IFLA_IFNAME, ref);
  return b;
}

const describe = (ref: LinkRef): string => (typeof ref === "number" ? `ifindex ${ref}` : ref);

export function listLinks(nl: Rtnl = rtnl()): Link[] {
  const b = new MessageBuilder(NL.RTM_GETLINK, 0, encodeIfInfo({}));
  b.u32(NL.IFLA_EXT_MASK, NL.RTEXT_FILTER_SKIP_STATS);
  return nl.dump(b, "list links").map((m) => decodeLink(m.payload));
}

export function getLink(ref: LinkRef, nl: Rtnl = rtnl()): Link | null {
  const b = linkMsg(NL.RTM_GETLINK, 0, ref);
  b.u32(NL.IFLA_EXT_MASK, NL.RTEXT_FILTER_SKIP_STATS);
  const m = nl.get(b, `get link ${describe(ref)}`);
  return m ? decodeLink(m.payload) : null;
}

/** The link or a NOT_FOUND error naming it. */
export function mustGetLink(ref: LinkRef, nl: Rtnl = rtnl()): Link {
  const l = getLink(ref, nl);
  if (!l) throw new StratumError("NOT_FOUND", `link ${describe(ref)} does not exist`);
  return l;
}

export function linkIndex(ref: LinkRef, nl: Rtnl = rtnl()): number {
  return typeof ref === "number" ? ref : mustGetLink(ref, nl).index;
}

function checkName(name: string): void {
  if (!name || Buffer.byteLength(name) > 15 || /[\s/:]/.test(name) || name === "." || name === "..")
    throw new StratumError("INVALID", `invalid interface name "${name}" (1-15 bytes, no spaces, '/' or ':')`);
}

export interface CommonLinkOpts {
  mtu?: number;
  mac?: string;
  up?: boolean;
  master?: LinkRef;
}

function createMsg(name: string, o: CommonLinkOpts, nl: Rtnl): MessageBuilder {
  checkName(name);
  const b = new MessageBuilder(
    NL.RTM_NEWLINK,
    NL.NLM_F_CREATE | NL.NLM_F_EXCL,
    encodeIfInfo({ flags: o.up ? NL.IFF_UP : 0, change: o.up ? NL.IFF_UP : 0 }),
  );
  b.str(NL.IFLA_IFNAME, name);
  if (o.mtu !== undefined) b.u32(NL.IFLA_MTU, o.mtu);
  if (o.mac !== undefined) b.attr(NL.IFLA_ADDRESS, macToBytes(o.mac));
  if (o.master !== undefined) b.u32(NL.IFLA_MASTER, linkIndex(o.master, nl));
  return b;
}

export function createBridge(
  name: string,
  o: CommonLinkOpts & { stp?: boolean; ageingTime?: number; mcastSnooping?: boolean } = {},
  nl: Rtnl = rtnl(),
): Link {
  const b = createMsg(name, o, nl);
  b.nest(NL.IFLA_LINKINFO, (li) => {
    li.str(NL.IFLA_INFO_KIND, "bridge");
    li.nest(NL.IFLA_INFO_DATA, (d) => {
      d.u32(NL.IFLA_BR_STP_STATE, o.stp ? 1 : 0);
      if (o.ageingTime !== undefined) d.u32(NL.IFLA_BR_AGEING_TIME, o.ageingTime);
      if (o.mcastSnooping !== undefined) d.u8(NL.IFLA_BR_MCAST_SNOOPING, o.mcastSnooping ? 1 : 0);
    });
  });
  nl.do(b, `create bridge ${name}`);
  return mustGetLink(name, nl);
}

export interface VethOpts extends CommonLinkOpts {
  /** Namespace for the peer: a name under /run/netns or a path. */
  peerNetns?: string;
  peerMac?: string;
  peerMtu?: number;
}

/** Creates `name` here and its peer `peer` (moved into `peerNetns` when given) in one request. */
export function createVeth(name: string, peer: string, o: VethOpts = {}, nl: Rtnl = rtnl()): Link {
  checkName(peer);
  const b = createMsg(name, o, nl);
  let nsFd = -1;
  try {
    if (o.peerNetns) nsFd = openReadOnly(netnsPath(o.peerNetns));
    b.nest(NL.IFLA_LINKINFO, (li) => {
      li.str(NL.IFLA_INFO_KIND, "veth");
      li.nest(NL.IFLA_INFO_DATA, (d) => {
        d.begin(NL.VETH_INFO_PEER);
        d.raw(encodeIfInfo({}));
        d.str(NL.IFLA_IFNAME, peer);
        if (o.peerMac) d.attr(NL.IFLA_ADDRESS, macToBytes(o.peerMac));
        if (o.peerMtu ?? o.mtu) d.u32(NL.IFLA_MTU, (o.peerMtu ?? o.mtu) as number);
        if (nsFd >= 0) d.u32(NL.IFLA_NET_NS_FD, nsFd);
        d.end();
      });
    });
    nl.do(b, `create veth ${name} (peer ${peer}${o.peerNetns ? ` in ${o.peerNetns}` : ""})`);
  } finally {
    closeFd(nsFd);
  }
  return mustGetLink(name, nl);
}

/** Creates a persistent TAP (for a VM's virtio-net backend), then applies the common options. */
export function createTap(
  name: string,
  o: CommonLinkOpts & { vnetHdr?: boolean; multiQueue?: boolean; owner?: number } = {},
  nl: Rtnl = rtnl(),
): Link {
  checkName(name);
  if (getLink(name, nl)) throw new StratumError("SYS", `create tap ${name}: EEXIST (File exists)`, { errno: 17 });
  createPersistentTap(name, o);
  try {
    setLink(name, { mtu: o.mtu, mac: o.mac, master: o.master, up: o.up }, nl);
  } catch (e) {
    deleteLink(name, nl);
    throw e;
  }
  return mustGetLink(name, nl);
}

export type MacvlanMode = "private" | "vepa" | "bridge" | "passthru";
export const MACVLAN_MODE_NUMBERS: Record<MacvlanMode, number> = {
  private: NL.MACVLAN_MODE_PRIVATE,
  vepa: NL.MACVLAN_MODE_VEPA,
  bridge: NL.MACVLAN_MODE_BRIDGE,
  passthru: NL.MACVLAN_MODE_PASSTHRU,
};

/** Creates a macvtap on `parent` (the VM opens /dev/tapN of its index). */
export function createMacvtap(
  name: string,
  parent: LinkRef,
  o: CommonLinkOpts & { mode?: MacvlanMode } = {},
  nl: Rtnl = rtnl(),
): Link {
  const b = createMsg(name, o, nl);
  b.u32(NL.IFLA_LINK, linkIndex(parent, nl));
  b.nest(NL.IFLA_LINKINFO, (li) => {
    li.str(NL.IFLA_INFO_KIND, "macvtap");
    li.nest(NL.IFLA_INFO_DATA, (d) => d.u32(NL.IFLA_MACVLAN_MODE, MACVLAN_MODE_NUMBERS[o.mode ?? "bridge"]));
  });
  nl.do(b, `create macvtap ${name} on ${describe(parent)}`);
  return mustGetLink(name, nl);
}

export interface VxlanOpts extends CommonLinkOpts {
  vni: number;
  /** UDP destination port; default 4789. */
  port?: number;
  local?: string;
  /** Underlay device. */
  dev?: LinkRef;
  /** Flood-and-learn stays off unless asked: Stratum writes FDB entries itself. */
  learning?: boolean;
  /** Group-based policy extension: carries a 16-bit group id (skb->mark). */
  gbp?: boolean;
  ttl?: number;
  udpCsum?: boolean;
  /** External (collect_md) mode: the VNI and remote of each packet come from its tunnel
   * metadata (set by eBPF), not from the device; `vni` is then ignored. */
  external?: boolean;
}

export function createVxlan(name: string, o: VxlanOpts, nl: Rtnl = rtnl()): Link {
  if (!Number.isInteger(o.vni) || o.vni < 0 || o.vni >= 1 << 24)
    throw new StratumError("INVALID", `VXLAN VNI ${o.vni} is outside 0..16777215`);
  const b = createMsg(name, o, nl);
  b.nest(NL.IFLA_LINKINFO, (li) => {
    li.str(NL.IFLA_INFO_KIND, "vxlan");
    li.nest(NL.IFLA_INFO_DATA, (d) => {
      if (!o.external) d.u32(NL.IFLA_VXLAN_ID, o.vni);
      else d.u8(NL.IFLA_VXLAN_COLLECT_METADATA, 1);
      d.u16be(NL.IFLA_VXLAN_PORT, o.port ?? 4789);
      d.u8(NL.IFLA_VXLAN_LEARNING, o.learning ? 1 : 0);
      if (o.local) {
        const ip = ipToBytes(o.local);
        d.attr(ip.length === 4 ? NL.IFLA_VXLAN_LOCAL : NL.IFLA_VXLAN_LOCAL6, ip);
      }
      if (o.dev !== undefined) d.u32(NL.IFLA_VXLAN_LINK, linkIndex(o.dev, nl));
      if (o.ttl !== undefined) d.u8(NL.IFLA_VXLAN_TTL, o.ttl);
      if (o.udpCsum !== undefined) d.u8(NL.IFLA_VXLAN_UDP_CSUM, o.udpCsum ? 1 : 0);
      if (o.gbp) d.flag(NL.IFLA_VXLAN_GBP);
    });
  });
  nl.do(b, `create vxlan ${name} (${o.external ? "external" : `VNI ${o.vni}`})`);
  return mustGetLink(name, nl);
}

export function deleteLink(ref: LinkRef, nl: Rtnl = rtnl()): void {
  nl.do(linkMsg(NL.RTM_DELLINK, 0, ref), `delete link ${describe(ref)}`);
}

/** Deletes the link if it exists; true when something was deleted. */
export function deleteLinkIfExists(ref: LinkRef, nl: Rtnl = rtnl()): boolean {
  try {
    deleteLink(ref, nl);
    return true;
  } catch (e) {
    if (e instanceof StratumError && (e.errno === ERRNO.ENODEV || e.errno === ERRNO.ENOENT)) return false;
    throw e;
  }
}

export interface LinkChange {
  up?: boolean;
  /** A bridge to enslave to, or null to release from its master. */
  master?: LinkRef | null;
  mac?: string;
  mtu?: number;
  /** Moves the link into this namespace (name under /run/netns or a path). */
  netns?: string;
  name?: string;
}

/** What a change sets, for its line in the mutation journal: " (master cnv-user-br0, up)". */
function changeNote(c: LinkChange): string {
  const parts: string[] = [];
  if (c.name !== undefined) parts.push(`name ${c.name}`);
  if (c.master !== undefined) parts.push(c.master === null ? "nomaster" : `master ${describe(c.master)}`);
  if (c.mac !== undefined) parts.push(`mac ${c.mac}`);
  if (c.mtu !== undefined) parts.push(`mtu ${c.mtu}`);
  if (c.netns !== undefined) parts.push(`netns ${c.netns}`);
  if (c.up !== undefined) parts.push(c.up ? "up" : "down");
  return parts.length ? ` (${parts.join(", ")})` : "";
}

export function setLink(ref: LinkRef, c: LinkChange, nl: Rtnl = rtnl()): void {
  const index = linkIndex(ref, nl);
  const flags = c.up === undefined ? 0 : c.up ? NL.IFF_UP : 0;
  const change = c.up === undefined ? 0 : NL.IFF_UP;
  const b = new MessageBuilder(NL.RTM_NEWLINK, 0, encodeIfInfo({ index, flags, change }));
  if (c.name !== undefined) {
    checkName(c.name);
    b.str(NL.IFLA_IFNAME, c.name);
  }
  if (c.mtu !== undefined) b.u32(NL.IFLA_MTU, c.mtu);
  if (c.mac !== undefined) b.attr(NL.IFLA_ADDRESS, macToBytes(c.mac));
  if (c.master !== undefined) b.u32(NL.IFLA_MASTER, c.master === null ? 0 : linkIndex(c.master, nl));
  let nsFd = -1;
  try {
    if (c.netns !== undefined) {
      nsFd = openReadOnly(netnsPath(c.netns));
      b.u32(NL.IFLA_NET_NS_FD, nsFd);
    }
    nl.do(b, `change link ${describe(ref)}${changeNote(c)}`);
  } finally {
    closeFd(nsFd);
  }
}

/** Sets bridge-port flags of a bridge member (learning, flooding, isolation). */
export function setBridgePort(ref: LinkRef, p: Omit<BridgePortInfo, "state">, nl: Rtnl = rtnl()): void {
  const index = linkIndex(ref, nl);
  const b = new MessageBuilder(NL.RTM_SETLINK, 0, encodeIfInfo({ family: NL.AF_BRIDGE, index }));
  const flagAttrs: Array<[keyof typeof p, number]> = [
    ["learning", NL.IFLA_BRPORT_LEARNING],
    ["unicastFlood", NL.IFLA_BRPORT_UNICAST_FLOOD],
    ["mcastFlood", NL.IFLA_BRPORT_MCAST_FLOOD],
    ["bcastFlood", NL.IFLA_BRPORT_BCAST_FLOOD],
    ["neighSuppress", NL.IFLA_BRPORT_NEIGH_SUPPRESS],
    ["isolated", NL.IFLA_BRPORT_ISOLATED],
    ["hairpin", NL.IFLA_BRPORT_MODE],
  ];
  b.nest(NL.IFLA_PROTINFO, (pi) => {
    for (const [k, t] of flagAttrs) if (p[k] !== undefined) pi.u8(t, p[k] ? 1 : 0);
  });
  nl.do(b, `set bridge port flags of ${describe(ref)}`);
}
