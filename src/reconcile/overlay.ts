/** The overlay of a cluster node (docs/overlay.md): the VXLAN device cnv-vxlan0 in external
 * mode with its programs attached before it joins the user bridge, the nodes' addresses
 * (stm_vteps) and the outer check on the device that carries this node's address, and every
 * endpoint of another node: its stm_remote entry (where its frames go, what it may send) and a
 * static FDB entry on the bridge pointing its MAC at cnv-vxlan0. A run limited to some networks
 * makes their endpoints' entries exact (adds and removes); a whole run also collects the
 * entries of networks that are gone, and, off a cluster, the device and everything else. */
import { encodeVtepKey, GW_MAX, type RemoteEndpoint, unmappedAddr } from "../datapath/port-maps";
import { contains, parseIp, parseSubnet } from "../model/ip";
import { profileIp6 } from "../model/network";
import { OVERLAY_DEVICE, USER_BRIDGE, VXLAN_PORT } from "../model/topology";
import {
  addFdb,
  createVxlan,
  deleteFdb,
  deleteLinkIfExists,
  deleteNeighbour,
  getLink,
  type Link,
  listAddresses,
  listFdb,
  listNeighbours,
  NL,
  type Rtnl,
  setBridgePort,
  setLink,
  setNeighbour,
} from "../netlink";
import type { Reconciler, RunState } from "./reconciler";

/** Bytes VXLAN adds in front of a frame: outer IPv4 (20) or IPv6 (40), UDP (8), VXLAN (8),
 * the inner Ethernet header (14). */
export const overlayOverhead = (nodeAddress: string): number => (parseIp(nodeAddress).family === 6 ? 70 : 50);

/** The device's own MTU: large, so the bridge hands it every frame (a frame larger than a
 * port's MTU is dropped silently on the way); what the overlay carries whole is checked in
 * the port programs against the overlay's MTU (stm_vteps' switch entry), which answer with
 * an ICMP error. */
export const OVERLAY_DEVICE_MTU = 65000;

/** The largest IP packet the overlay carries whole: the underlay device's MTU (the one that
 * holds the node's address; 1500 when none does) less VXLAN's overhead. */
export function overlayMtu(nl: Rtnl, address: string): number {
  return mtuOver(deviceHolding(nl, address), address);
}

const mtuOver = (under: Link | undefined, address: string): number => (under?.mtu ?? 1500) - overlayOverhead(address);

/** A network id of a profile MAC (02:NN:NN:…), or undefined for another MAC. */
const netIdOfMac = (mac: string): number | undefined => {
  const b = mac.split(":");
  return b[0] === "02" ? Number.parseInt(`${b[1]}${b[2]}`, 16) : undefined;
};

/** The device that holds `address`, if any. */
function deviceHolding(nl: Rtnl, address: string): Link | undefined {
  const want = parseIp(address);
  const a = listAddresses({}, nl).find((x) => {
    const p = parseIp(x.ip);
    return p.family === want.family && p.value === want.value;
  });
  return a ? (getLink(a.index, nl) ?? undefined) : undefined;
}

function ensureDevice(run: RunState, address: string): Link {
  const { dp, nl } = run.svc;
  let dev = getLink(OVERLAY_DEVICE, nl);
  if (!dev)
    dev = createVxlan(
      OVERLAY_DEVICE,
      { vni: 0, external: true, learning: false, gbp: true, port: VXLAN_PORT, local: address, mtu: OVERLAY_DEVICE_MTU },
      nl,
    );
  if (dev.mtu !== OVERLAY_DEVICE_MTU) setLink(OVERLAY_DEVICE, { mtu: OVERLAY_DEVICE_MTU }, nl);
  // Programs and the interface entry first: nothing crosses the device unchecked.
  dp.setIface(dev.index, { kind: "overlay" });
  dp.attachOverlay(dev.index);
  const br = getLink(USER_BRIDGE, nl);
  if (dev.master !== br?.index) setLink(OVERLAY_DEVICE, { master: USER_BRIDGE }, nl);
  const port = getLink(OVERLAY_DEVICE, nl)?.bridgePort;
  if (port?.learning !== false) setBridgePort(OVERLAY_DEVICE, { learning: false }, nl);
  if (!dev.up) setLink(OVERLAY_DEVICE, { up: true }, nl);
  return getLink(OVERLAY_DEVICE, nl) as Link;
}

type Nodes = ReturnType<NonNullable<RunState["o"]["overlay"]>["nodes"]>;

/** stm_vteps: the switch (with the overlay's MTU over `under`, the device that holds this
 * node's address), this node (marked self) and every other node that has not left. */
function restoreVteps(run: RunState, address: string, nodes: Nodes, under: Link | undefined): void {
  const { dp } = run.svc;
  const want = new Map<string, { self: boolean; gateway: boolean }>([["", { self: false, gateway: false }]]);
  for (const n of nodes)
    if (n.state !== "left")
      want.set(n.address, { self: n.address === address, gateway: n.gateway === true && n.state === "ready" });
  want.set(address, { self: true, gateway: false });
  const mtu = mtuOver(under, address);
  for (const [addr, v] of want) dp.setVtep(addr, { ...v, ...(addr === "" ? { mtu } : {}) });
  const keys = new Set([...want.keys()].map((a) => (a === "" ? "" : unmappedAddr(encodeVtepKey(a)))));
  for (const k of dp.vtepKeys()) {
    const addr = k.every((x) => x === 0) ? "" : unmappedAddr(k);
    if (!keys.has(addr)) {
      dp.deleteVtepKey(k);
      run.collected(`overlay node address ${addr}`);
    }
  }
}

/** The outer check on the device that carries the node's address: the uplink's filter makes it
 * when that is the uplink; another device gets the underlay program. */
function restoreUnderlay(run: RunState, address: string, dev: Link | undefined): void {
  const up = run.o.uplink ? getLink(run.o.uplink, run.svc.nl) : undefined;
  if (!dev) {
    run.report.errors.push(
      `overlay: no device holds the node address ${address}: VXLAN from unknown sources is dropped only after decapsulation (vtep-unknown on ${OVERLAY_DEVICE})`,
    );
    return;
  }
  // The address on the user bridge, whose port is the uplink: the uplink's filter sees the frames.
  const br = getLink(USER_BRIDGE, run.svc.nl);
  if (dev.index === up?.index || (br && dev.index === br.index && up)) {
    run.svc.dp.detachUnderlay();
    return;
  }
  run.svc.dp.attachUnderlay(dev.index);
}

/** North-south over the overlay: the live gateway nodes other than this one (by name, the
 * datapath takes GW_MAX), whether this node is one, and the overlay device. */
function restoreGateways(run: RunState, o: NonNullable<RunState["o"]["overlay"]>, nodes: Nodes, dev: Link): void {
  const serving = (n: Nodes[number]) => n.gateway === true && (o.serving?.(n.name) ?? true);
  const gateways = nodes
    .filter((n) => serving(n) && n.state === "ready" && n.address !== o.address)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((n) => n.address);
  // A gateway that stands by in its groups sends its own workloads' traffic to the active one too.
  const self = nodes.find((n) => n.address === o.address);
  const selfServes = o.gateway === true && (!self || (o.serving?.(self.name) ?? true));
  if (gateways.length > GW_MAX)
    run.report.errors.push(
      `overlay: ${gateways.length} gateway nodes; north-south traffic goes to the first ${GW_MAX} by name`,
    );
  run.svc.dp.setGwCfg({ gateways, self: selfServes, overlayIfindex: dev.index });
}

/** A gateway node routes the replies of other nodes' north-south flows to their endpoints
 * over the overlay: a permanent neighbour entry on the bridge for each remote endpoint's
 * addresses (the overlay answers no ARP from the node itself). On any other node, none. Only
 * addresses inside the run's networks are touched: the rest of the bridge's table is not ours. */
function syncNeighbours(
  run: RunState,
  gateway: boolean,
  want: Map<string, RemoteEndpoint>,
  networks: RunState["networks"],
): void {
  const { nl } = run.svc;
  const br = getLink(USER_BRIDGE, nl);
  if (!br) return;
  const wanted = new Map<string, string>();
  if (gateway)
    for (const [mac, r] of want) {
      wanted.set(r.ip4, mac);
      if (r.ip6) wanted.set(r.ip6, mac);
    }
  const subnets = networks.flatMap((n) => [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]).map((c) => parseSubnet(c));
  const ours = (ip: string) => {
    const a = parseIp(ip);
    return subnets.some((s) => s.family === a.family && contains(s, a));
  };
  const have = new Map<string, string>();
  for (const n of listNeighbours({ dev: br.index }, nl))
    if (n.ip && n.state & NL.NUD_PERMANENT && ours(n.ip)) have.set(n.ip, (n.mac ?? "").toLowerCase());
  for (const [ip, mac] of wanted) if (have.get(ip) !== mac) setNeighbour(br.index, ip, mac, nl);
  for (const ip of have.keys())
    if (!wanted.has(ip)) {
      deleteNeighbour(br.index, ip, nl);
      run.collected(`neighbour entry ${ip} on ${USER_BRIDGE}`);
    }
}

/** What stm_remote and the FDB must hold for the run's networks: every endpoint of another
 * node, by MAC. */
function wanted(
  run: RunState,
  o: NonNullable<RunState["o"]["overlay"]>,
  nodes: Nodes,
  networks: RunState["networks"],
): Map<string, RemoteEndpoint> {
  const self = run.svc.store.node;
  const addr = new Map(nodes.map((n) => [n.name, n.address]));
  const out = new Map<string, RemoteEndpoint>();
  for (const n of networks)
    for (const e of run.svc.store.listEndpoints(n.name)) {
      if (!e.node || e.node === self) continue;
      const node = addr.get(e.node);
      if (!node) {
        run.report.errors.push(`overlay: endpoint ${e.name} runs on ${e.node}, a node without an address`);
        continue;
      }
      out.set(e.mac.toLowerCase(), {
        netId: n.id,
        vni: o.vniOf(n.id),
        ip4: e.ip,
        ...(n.cidr6 ? { ip6: profileIp6(n.cidr6, e.mac) } : {}),
        node,
      });
    }
  return out;
}

/** Makes the remote entries of the networks `ids` (all: undefined) what `want` says. */
function syncRemotes(run: RunState, dev: Link, want: Map<string, RemoteEndpoint>, ids?: Set<number>): void {
  const { dp, nl } = run.svc;
  const mine = (mac: string) => {
    const id = netIdOfMac(mac);
    return ids === undefined || (id !== undefined && ids.has(id));
  };
  const have = dp.remotes();
  for (const [mac, r] of want) dp.setRemote(mac, r);
  for (const mac of have.keys())
    if (mine(mac) && !want.has(mac)) {
      dp.deleteRemote(mac);
      run.collected(`overlay entry of ${mac}`);
    }
  const fdb = new Set(
    listFdb({ dev: dev.index }, nl)
      .filter((f) => f.mac && f.flags & NL.NTF_MASTER && !(f.state & NL.NUD_PERMANENT))
      .map((f) => (f.mac as string).toLowerCase()),
  );
  for (const mac of want.keys()) if (!fdb.has(mac)) addFdb({ dev: OVERLAY_DEVICE, mac }, {}, nl);
  for (const mac of fdb)
    if (mine(mac) && !want.has(mac)) {
      deleteFdb({ dev: OVERLAY_DEVICE, mac }, nl);
      run.collected(`FDB entry ${mac} on ${OVERLAY_DEVICE}`);
    }
}

export const overlay: Reconciler = {
  name: "overlay",
  scoped: "networks",
  restore(run) {
    const o = run.o.overlay;
    if (!o) return;
    const only = run.o.only;
    const have = only ? getLink(OVERLAY_DEVICE, run.svc.nl) : null;
    const dev = have ?? ensureDevice(run, o.address);
    const nodes = o.nodes();
    if (!only || only.nodes || !have) {
      const under = deviceHolding(run.svc.nl, o.address);
      restoreVteps(run, o.address, nodes, under);
      restoreUnderlay(run, o.address, under);
      restoreGateways(run, o, nodes, dev);
    }
    // Nodes changed: every remote entry may carry another address.
    const networks = only?.nodes ? run.svc.store.listNetworks() : run.networks;
    const ids = only && !only.nodes ? new Set(run.networks.map((n) => n.id)) : undefined;
    const want = wanted(run, o, nodes, networks);
    syncRemotes(run, dev, want, ids);
    syncNeighbours(run, o.gateway === true, want, networks);
  },
  prune(run) {
    if (run.o.overlay) return; // a whole run's restore made every network exact, the gone ones' too
    const { dp, nl } = run.svc;
    if (dp.detachUnderlay()) run.collected("the underlay's VXLAN check (no cluster)");
    for (const k of dp.vtepKeys()) dp.deleteVtepKey(k);
    for (const mac of dp.remotes().keys()) dp.deleteRemote(mac);
    dp.setGwCfg({ gateways: [], self: false, overlayIfindex: 0 });
    syncNeighbours(run, false, new Map(), run.networks);
    const dev = getLink(OVERLAY_DEVICE, nl);
    if (dev) {
      dp.deleteIface(dev.index);
      deleteLinkIfExists(OVERLAY_DEVICE, nl);
      run.collected(`${OVERLAY_DEVICE} (no cluster)`);
    }
  },
};
